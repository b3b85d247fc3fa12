'use strict';
// msg_size (Node): fork() this script; the parent sends strings of SIZE
// bytes with process.send (when send() returns false the next one waits
// for its callback), first a few to warm both sides up, then for the time
// given. After each part it sends the count so far as a number and the
// child, which checks every string's length and ends, answers with its own
// count. Timed from the end of the warm-up to the second answer; MB = 10^6
// bytes of payload. SIZE is capped at 64 MiB - 16, as on the lipc and C
// sides.
//   node msg_size.js <size> [ms]   -> RESULT msg_size <n> MB/s, RESULT msg_rate <n> msg/s
const { fork } = require('child_process');
const { count, now, secs, result, serialization, die } = require('./common');

const MAX = 64 * 1024 * 1024 - 16;
const child = Boolean(process.send);
const size = Math.min(Number(process.argv[child ? 3 : 2]) || 1024, MAX);

if (child) {
  let n = 0;
  const last = 'abcdefghijklmnopqrstuvwxyz'[(size - 1) % 26];
  process.on('message', (m) => {
    if (typeof m === 'number') {
      if (m !== n) die(`child: got ${n} messages, the parent sent ${m}`);
      process.send(n);
      return;
    }
    if (m.length !== size || m[0] !== 'a' || m[size - 1] !== last) die('child: bad message');
    n++;
  });
  process.on('disconnect', () => process.exit(0));
} else {
  const ms = count(process.argv[3], 1000);
  const s = 'abcdefghijklmnopqrstuvwxyz'.repeat(Math.floor(size / 26) + 1).slice(0, size);
  const w = fork(__filename, ['child', String(size)], { serialization: serialization() });
  const every = Math.max(1, Math.floor(65536 / size));
  let n = 0;
  let answered = null;
  w.on('message', (ack) => {
    if (ack !== n) die(`parent: bad ack ${ack} for ${n}`);
    answered();
  });
  // sends `upto` strings, or strings until `stop`, then the count; `done`
  // runs once the child answered
  const part = (upto, stop, done) => {
    let k = 0;
    const pump = () => {
      for (;;) {
        if (++k >= every) {
          k = 0;
          if (upto !== null ? n >= upto : now() >= stop) {
            answered = done;
            w.send(n);
            return;
          }
        }
        n++;
        if (!w.send(s)) {
          // over the backlog threshold: the next one goes on once it is written
          n++;
          w.send(s, pump);
          return;
        }
      }
    };
    pump();
  };
  part(Math.max(4, Math.min(1000, Math.floor((8 << 20) / size))), null, () => {
    const warm = n;
    const t0 = now();
    part(null, t0 + BigInt(ms) * 1000000n, () => {
      const sec = secs(t0, now());
      result('msg_size', ((n - warm) * size) / 1e6 / sec, 'MB/s', 1);
      result('msg_rate', (n - warm) / sec, 'msg/s');
      w.disconnect();
    });
  });
}
