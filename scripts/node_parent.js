'use strict';
// node_parent.js - a Node parent with a lipc child: Node's own
// child_process.fork runs scripts/node_parent_child.lua under lipc (execPath
// points at the lipc binary; the channel is Node's JSON lines on the fd in
// NODE_CHANNEL_FD). The child answers every {n} with {n, square} and says
// goodbye when told; the parent prints what it got.
//   node scripts/node_parent.js [path/to/lipc]
const { fork } = require('child_process');
const path = require('path');

const lipc = process.argv[2] || process.env.LIPC || path.join(__dirname, '..', 'build', 'lipc');
const child = fork(path.join(__dirname, 'node_parent_child.lua'), ['from-node'], {
  execPath: lipc,
  execArgv: [],
  serialization: 'json',
});

const N = 5;
let got = 0;
child.on('message', (m) => {
  if (m.hello) {
    console.log(`hello from lipc pid ${m.pid} args ${JSON.stringify(m.args)}`);
    for (let i = 1; i <= N; i++) child.send({ n: i });
    return;
  }
  if (m.square !== undefined) {
    if (m.square !== m.n * m.n) throw new Error(`bad square ${JSON.stringify(m)}`);
    got++;
    if (got === N) child.send({ bye: true });
    return;
  }
  if (m.bye) console.log(`lipc says bye after ${m.seen} messages`);
});
child.on('disconnect', () => console.log('disconnect'));
child.on('exit', (code, signal) => {
  console.log(`exit ${code} ${signal}`);
  process.exitCode = got === N && code === 0 ? 0 : 1;
});
