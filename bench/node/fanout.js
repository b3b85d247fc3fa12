'use strict';
// fanout (Node): one parent publishes the small table to W forked workers
// (every message to every worker) until the time is up, then the count;
// each worker checks every message and acks with the count and the sum of
// the seqs. When a send returns false the parent waits for that worker's
// next send to be written before going on. Timed from the first send to
// the last ack; the figure is messages delivered (W x sent).
//   node fanout.js <workers> [ms]   -> RESULT fanout <n> msg/s
const { fork } = require('child_process');
const { count, now, secs, result, serialization, small, die } = require('./common');

if (process.send) {
  let n = 0;
  let sum = 0;
  process.on('message', (m) => {
    if (typeof m === 'number') {
      if (m !== n) die(`worker: got ${n} messages, the parent sent ${m}`);
      process.send(small(sum));
      return;
    }
    if (m.seq !== n + 1 || m.args[0] + m.args[1] + m.args[2] !== 6) die('worker: bad message');
    n++;
    sum += m.seq;
  });
  process.on('disconnect', () => process.exit(0));
  process.send('ready');
} else {
  const nw = Number(process.argv[2]) || 4;
  const ms = count(process.argv[3], 1000);
  const workers = [];
  let ready = 0;
  let acks = 0;
  let n = 0;
  let t0;
  let stop;
  // Publishes in batches of 64 messages; the last message of a batch goes
  // with a callback. When a send returned false in a batch, the next batch
  // waits until every callback came (every worker's backlog written).
  let pending = 0;
  let waiting = false;
  const written = () => {
    if (--pending === 0 && waiting) {
      waiting = false;
      pump();
    }
  };
  const pump = () => {
    for (;;) {
      if (now() >= stop) {
        for (const w of workers) w.send(n);
        return;
      }
      let blocked = false;
      for (let b = 1; b <= 64; b++) {
        const m = small(++n);
        for (const w of workers) {
          let ok;
          if (b === 64) {
            pending++;
            ok = w.send(m, written);
          } else {
            ok = w.send(m);
          }
          if (!ok) blocked = true;
        }
      }
      if (blocked) {
        waiting = true;
        return;
      }
    }
  };
  for (let i = 0; i < nw; i++) {
    const w = fork(__filename, [], { serialization: serialization() });
    w.on('message', (m) => {
      if (m === 'ready') {
        if (++ready === nw) {
          t0 = now();
          stop = t0 + BigInt(ms) * 1000000n;
          pump();
        }
        return;
      }
      if (m.seq !== (n * (n + 1)) / 2) die(`parent: bad ack from worker ${i}`);
      if (++acks === nw) {
        result('fanout', (nw * n) / secs(t0, now()), 'msg/s');
        for (const x of workers) x.disconnect();
      }
    });
    workers.push(w);
  }
}
