'use strict';
// stdout_read (Node): spawn a child whose stdout is a pipe (build/bench/writer,
// the C helper writing 8 KiB write()s - path in $BENCH_WRITER - or
// `head -c BYTES /dev/zero` when it is missing), count the bytes of every
// 'data' chunk until 'end'. Timed from spawn to 'end'. MB = 10^6 bytes.
//   node stdout_read.js [bytes]   -> RESULT stdout_read <n> MB/s
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const { count, now, secs, result, die } = require('./common');

const total = count(process.argv[2], 1073741824);
const writer = process.env.BENCH_WRITER ||
  path.join(__dirname, '..', '..', 'build', 'bench', 'writer');
let cmd = writer;
let args = [String(total)];
try {
  fs.accessSync(writer, fs.constants.X_OK);
} catch {
  cmd = 'head';
  args = [`-c${total}`, '/dev/zero'];
}

const t0 = now();
const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
let got = 0;
child.stdout.on('data', (chunk) => { got += chunk.length; });
child.stdout.on('end', () => {
  const t1 = now();
  if (got !== total) die(`read ${got} of ${total} bytes`);
  result('stdout_read', total / 1e6 / secs(t0, t1), 'MB/s', 1);
});
child.on('exit', (code) => { if (code !== 0) die(`child exited with ${code}`); });
