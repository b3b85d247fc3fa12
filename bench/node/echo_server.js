'use strict';
// echo_server (Node): the server side of the connections curve. Listens on
// 127.0.0.1 (a free port, backlog 4096), prints "PORT <n>", and echoes
// every connection ('data' -> write). Ends when its stdin ends (conn_load
// closes it).
//   node echo_server.js   (run by build/bench/conn_load)
const net = require('net');

const server = net.createServer((sock) => {
  sock.on('data', (d) => sock.write(d));
  sock.on('error', () => {}); // conn_load ends connections with a reset
});
server.listen(0, '127.0.0.1', 4096, () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
