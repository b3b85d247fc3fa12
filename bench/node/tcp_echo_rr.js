'use strict';
// tcp_echo_rr (Node): the parent runs a net echo server on 127.0.0.1 (port 0);
// a fork()ed child connects and does N round trips of 64 bytes (write 64,
// wait until 64 are back). The parent times from 'connection' to writing the
// Nth echo. Defaults kept (no setNoDelay), like the C and lipc sides.
//   node tcp_echo_rr.js [round_trips]   -> RESULT tcp_echo_rr <n> rt/s
const net = require('net');
const { fork } = require('child_process');
const { count, now, secs, result, die } = require('./common');

const MSG = 64;

if (process.argv[2] === 'client') {
  const n = Number(process.argv[3]);
  const port = Number(process.argv[4]);
  const msg = Buffer.alloc(MSG, 'x');
  const sock = net.connect({ host: '127.0.0.1', port }, () => sock.write(msg));
  let done = 0;
  let have = 0;
  sock.on('data', (d) => {
    have += d.length;
    while (have >= MSG) {
      have -= MSG;
      if (++done === n) { sock.end(); return; }
      sock.write(msg);
    }
  });
  sock.on('error', (e) => die(`client: ${e.message}`));
  sock.on('close', () => process.exit(done === n ? 0 : 1));
} else {
  const n = count(process.argv[2], 100000);
  let t0;
  let t1;
  let echoed = 0;
  const server = net.createServer((sock) => {
    t0 = now();
    sock.on('data', (d) => {
      sock.write(d);
      echoed += d.length;
      if (echoed === n * MSG) t1 = now();
    });
    sock.on('close', () => server.close());
  });
  server.listen(0, '127.0.0.1', () => {
    const child = fork(__filename, ['client', String(n), String(server.address().port)],
      { stdio: 'inherit' });
    child.on('exit', (code) => {
      if (code !== 0 || !t1) die('echo incomplete');
      result('tcp_echo_rr', n / secs(t0, t1), 'rt/s');
    });
  });
}
