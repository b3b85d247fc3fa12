'use strict';
// ipc_bulk (Node): fork() this script; the parent sends N messages
// {seq, data: <1 MiB string>} with process.send (json serialization by
// default), honouring backpressure as in ipc_stream; the child checks each
// and acks after the last. Timed from the first send to the ack.
// MB = 10^6 bytes of payload.
//   node ipc_bulk.js [messages]   -> RESULT ipc_bulk <n> MB/s
const { fork } = require('child_process');
const { count, now, secs, result, serialization, die } = require('./common');

const SIZE = 1 << 20;

if (process.send) {
  const n = Number(process.argv[2]);
  let seen = 0;
  let bytes = 0;
  process.on('message', (m) => {
    const d = m.data;
    if (m.seq !== seen + 1 || d.length !== SIZE || d[0] !== 'a') die('child: bad message');
    bytes += d.length;
    if (++seen === n) process.send({ seq: bytes });
  });
  process.on('disconnect', () => process.exit(0));
} else {
  const n = count(process.argv[2], 1000);
  let data = '';
  for (let i = 0; i < 26; i++) data += String.fromCharCode(97 + i);
  data = data.repeat(Math.ceil(SIZE / 26)).slice(0, SIZE);
  const child = fork(__filename, [String(n)], { serialization: serialization() });
  let t0;
  child.on('message', (m) => {
    const t1 = now();
    if (m.seq !== n * SIZE) die('parent: bad ack');
    result('ipc_bulk', (n * SIZE) / 1e6 / secs(t0, t1), 'MB/s', 1);
    child.disconnect();
  });
  let i = 1;
  const pump = () => {
    while (i <= n) {
      if (!child.send({ seq: i++, data }) && i <= n) {
        child.send({ seq: i++, data }, pump);
        return;
      }
    }
  };
  t0 = now();
  pump();
}
