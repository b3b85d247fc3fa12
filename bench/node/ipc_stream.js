'use strict';
// ipc_stream (Node): fork() this script; the parent sends N small tables one
// way with process.send (json serialization by default) and the child, after
// the last one, sends an ack whose seq is the sum of the seqs it saw. When
// send() returns false (backlog over Node's threshold) the parent waits for
// that send's callback before going on, so memory stays bounded. Timed from
// the first send to the ack.
//   node ipc_stream.js [messages]   -> RESULT ipc_stream <n> msg/s
const { fork } = require('child_process');
const { count, now, secs, result, serialization, small, die } = require('./common');

if (process.send) {
  const n = Number(process.argv[2]);
  let seen = 0;
  let sum = 0;
  process.on('message', (m) => {
    if (m.args[0] + m.args[1] + m.args[2] !== 6) die('child: bad message');
    sum += m.seq;
    if (++seen === n) process.send(small(sum));
  });
  process.on('disconnect', () => process.exit(0));
} else {
  const n = count(process.argv[2], 1000000);
  const child = fork(__filename, [String(n)], { serialization: serialization() });
  let t0;
  child.on('message', (m) => {
    const t1 = now();
    if (m.seq !== (n * (n + 1)) / 2) die('parent: bad ack');
    result('ipc_stream', n / secs(t0, t1), 'msg/s');
    child.disconnect();
  });
  let i = 1;
  const pump = () => {
    while (i <= n) {
      if (!child.send(small(i++)) && i <= n) {
        // over the backlog threshold: go on once the next message is written
        child.send(small(i++), pump);
        return;
      }
    }
  };
  t0 = now();
  pump();
}
