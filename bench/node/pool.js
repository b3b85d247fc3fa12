'use strict';
// pool (Node): the pool a Node user writes by hand, as Node has none:
// W child_process.fork workers, a list of idle ones and a queue of waiting
// calls. 4 x W callers each make calls in a loop (the next when the reply
// came) until the time is up; each call carries a number and its reply
// must be that number. With WORK_US > 0 the worker spins that many
// microseconds of its own CPU time (process.cpuUsage) per call.
//   node pool.js <workers> <work_us> [ms]   -> RESULT pool <n> calls/s
const { fork } = require('child_process');
const { count, now, secs, result, serialization, die } = require('./common');

if (process.send) {
  const work = Number(process.argv[2]);
  const cpu = () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  process.on('message', (x) => {
    if (work > 0) {
      const stop = cpu() + work;
      while (cpu() < stop);
    }
    process.send(x);
  });
  process.on('disconnect', () => process.exit(0));
} else {
  const workers = Number(process.argv[2]) || 2;
  const workUs = Number(process.argv[3]) || 0;
  const ms = count(process.argv[4], 1000);
  const callers = 4 * workers;
  const idle = [];
  const waiting = []; // calls for which no worker was idle: [msg, resolve]
  const all = [];

  const dispatch = (w, msg, resolve) => {
    w.resolve = resolve;
    w.send(msg);
  };
  for (let i = 0; i < workers; i++) {
    const w = fork(__filename, [String(workUs)], { serialization: serialization() });
    w.on('message', (reply) => {
      const resolve = w.resolve;
      w.resolve = null;
      const next = waiting.shift();
      if (next) dispatch(w, next[0], next[1]);
      else idle.push(w);
      resolve(reply);
    });
    idle.push(w);
    all.push(w);
  }
  const call = (msg) => new Promise((resolve) => {
    const w = idle.pop();
    if (w) dispatch(w, msg, resolve);
    else waiting.push([msg, resolve]);
  });

  // `callers` loops, each making calls until `stop` or `limit` calls
  const load = async (stop, limit) => {
    let calls = 0;
    const caller = async (c) => {
      for (let i = c; calls < limit && (stop === null || now() < stop); i += callers) {
        const r = await call(i);
        if (r !== i) die(`pool: reply ${r} for call ${i}`);
        calls++;
      }
    };
    const loops = [];
    for (let c = 1; c <= callers; c++) loops.push(caller(c));
    await Promise.all(loops);
    return calls;
  };

  (async () => {
    await load(null, 4 * callers); // every worker up and warm
    const t0 = now();
    const n = await load(t0 + BigInt(ms) * 1000000n, Infinity);
    result('pool', n / secs(t0, now()), 'calls/s');
    for (const w of all) w.disconnect();
  })();
}
