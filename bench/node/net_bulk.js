'use strict';
// tcp_bulk / unix_bulk (Node): the parent listens (net server on 127.0.0.1
// port 0, or a Unix socket path in $BENCH_TMP or /tmp) and counts every
// 'data' chunk until 'end'; a fork()ed child connects and writes BYTES as
// 1 MiB Buffers, waiting for 'drain' whenever write() returns false, then
// end()s. The parent times from 'connection' to 'end'. MB = 10^6 bytes.
//   node net_bulk.js tcp|unix [bytes]   -> RESULT tcp_bulk|unix_bulk <n> MB/s
const net = require('net');
const os = require('os');
const path = require('path');
const fs = require('fs');
const { fork } = require('child_process');
const { count, now, secs, result, die } = require('./common');

const CHUNK = 1 << 20;

if (process.argv[2] === 'client') {
  const total = Number(process.argv[3]);
  const where = process.argv[4];
  const target = /^\d+$/.test(where) ? { host: '127.0.0.1', port: Number(where) } : { path: where };
  const buf = Buffer.alloc(CHUNK);
  let left = total;
  const sock = net.connect(target, () => {
    const pump = () => {
      while (left > 0) {
        const k = Math.min(left, CHUNK);
        left -= k;
        if (!sock.write(k === CHUNK ? buf : buf.subarray(0, k))) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end();
    };
    pump();
  });
  sock.on('error', (e) => die(`client: ${e.message}`));
  sock.on('close', () => process.exit(0));
} else {
  const kind = process.argv[2];
  if (kind !== 'tcp' && kind !== 'unix') die('usage: net_bulk.js tcp|unix [bytes]');
  const total = count(process.argv[3], 1073741824);
  const sockPath = path.join(process.env.BENCH_TMP || os.tmpdir(), `node-bulk-${process.pid}.sock`);
  let t0;
  let got = 0;
  const server = net.createServer((sock) => {
    t0 = now();
    sock.on('data', (d) => { got += d.length; });
    sock.on('end', () => {
      const t1 = now();
      if (got !== total) die(`read ${got} of ${total} bytes`);
      result(`${kind}_bulk`, total / 1e6 / secs(t0, t1), 'MB/s', 1);
      server.close();
    });
  });
  const started = () => {
    const where = kind === 'tcp' ? String(server.address().port) : sockPath;
    fork(__filename, ['client', String(total), where], { stdio: 'inherit' })
      .on('exit', (code) => { if (code !== 0) die(`client exited with ${code}`); });
  };
  if (kind === 'tcp') {
    server.listen(0, '127.0.0.1', started);
  } else {
    try { fs.unlinkSync(sockPath); } catch {}
    server.listen(sockPath, started);
    server.on('close', () => { try { fs.unlinkSync(sockPath); } catch {} });
  }
}
