'use strict';
// node_child.js - the Node child of scripts/node_child.lua: started by
// lipc's fork() with NODE_CHANNEL_FD, it talks through process.send and
// process.on('message') like any child of Node's own fork().
process.send({ hello: process.argv[2], version: process.version });
process.on('message', (m) => {
  if (m.op === 'upper') process.send({ text: m.text.toUpperCase() });
  else if (m.op === 'sum') process.send({ sum: m.xs.reduce((a, b) => a + b, 0) });
});
process.on('disconnect', () => process.exit(0));
