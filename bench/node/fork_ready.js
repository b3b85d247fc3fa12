'use strict';
// fork_ready (Node): the time from child_process.fork() to the child's first
// message ('message' event in the parent); the child sends a small table as
// its first statement, then exits. Median of K runs, one after another.
//   node fork_ready.js [runs]   -> RESULT fork_ready <ms> ms
const { fork } = require('child_process');
const { count, now, result, serialization, small, die } = require('./common');

if (process.send) {
  process.send(small(1), () => process.exit(0));
} else {
  const k = count(process.argv[2], 20);
  const times = [];
  const once = () => {
    if (times.length === k) {
      times.sort((a, b) => a - b);
      result('fork_ready', times[Math.floor(k / 2)], 'ms', 3);
      return;
    }
    const t0 = now();
    const child = fork(__filename, [], { serialization: serialization() });
    child.once('message', (m) => {
      times.push(Number(now() - t0) / 1e6);
      if (m.seq !== 1) die('bad ready message');
    });
    child.once('exit', (code) => {
      if (code !== 0) die(`child exited with ${code}`);
      once();
    });
  };
  once();
}
