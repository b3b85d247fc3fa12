'use strict';
// ipc_pingpong (Node): fork() this script; the parent sends a small table
// with process.send (json serialization by default), the child sends it back,
// the parent checks it and sends the next. Timed from the first send to the
// last reply.
//   node ipc_pingpong.js [round_trips]   -> RESULT ipc_pingpong <n> rt/s
const { fork } = require('child_process');
const { count, now, secs, result, serialization, small, die } = require('./common');

if (process.send) {
  process.on('message', (m) => {
    if (m.args[0] + m.args[1] + m.args[2] !== 6) die('child: bad message');
    process.send(small(m.seq));
  });
  process.on('disconnect', () => process.exit(0));
} else {
  const n = count(process.argv[2], 50000);
  const child = fork(__filename, [], { serialization: serialization() });
  let i = 1;
  let t0;
  child.on('message', (m) => {
    if (m.seq !== i) die('parent: bad reply');
    if (i === n) {
      result('ipc_pingpong', n / secs(t0, now()), 'rt/s');
      child.disconnect();
      return;
    }
    child.send(small(++i));
  });
  t0 = now();
  child.send(small(i));
}
