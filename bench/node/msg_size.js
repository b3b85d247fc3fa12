'use strict';
// msg_size (Node): fork() this script; the parent sends strings of SIZE
// bytes with process.send until the time is up (when send() returns false
// it waits for that send's callback), then the count as a number; the
// child checks each string's length and ends, and acks with the count.
// Timed from the first send to the ack; MB = 10^6 bytes of payload. SIZE
// is capped at 64 MiB - 16, as on the lipc and C sides.
//   node msg_size.js <size> [ms]   -> RESULT msg_size <n> MB/s, RESULT msg_rate <n> msg/s
const { fork } = require('child_process');
const { count, now, secs, result, serialization, die } = require('./common');

const MAX = 64 * 1024 * 1024 - 16;
const child = Boolean(process.send);
const size = Math.min(Number(process.argv[child ? 3 : 2]) || 1024, MAX);
const data = () => 'abcdefghijklmnopqrstuvwxyz'.repeat(Math.floor(size / 26) + 1).slice(0, size);

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
  process.send('ready');
} else {
  const ms = count(process.argv[3], 1000);
  const s = data();
  const w = fork(__filename, ['child', String(size)], { serialization: serialization() });
  const every = Math.max(1, Math.floor(65536 / size));
  let n = 0;
  let t0;
  let stop;
  let k = 0;
  const pump = () => {
    for (;;) {
      if (++k >= every) {
        k = 0;
        if (now() >= stop) {
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
  w.once('message', (m) => {
    if (m !== 'ready') die('parent: the child did not start');
    w.on('message', (ack) => {
      const t1 = now();
      if (ack !== n) die(`parent: bad ack ${ack}`);
      const sec = secs(t0, t1);
      result('msg_size', (n * size) / 1e6 / sec, 'MB/s', 1);
      result('msg_rate', n / sec, 'msg/s');
      w.disconnect();
    });
    t0 = now();
    stop = t0 + BigInt(ms) * 1000000n;
    pump();
  });
}
