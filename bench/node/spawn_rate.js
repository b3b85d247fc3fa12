'use strict';
// spawn_rate (Node): spawn('/bin/true') and wait for 'exit', N times one
// after another ("seq") or N times keeping K in flight ("parK", e.g. par8).
// stdio 'inherit' (no pipes), like the C and lipc sides. With MS, no spawn
// starts once MS milliseconds have passed.
//   node spawn_rate.js [spawns] [seq|parK|both] [ms]
//        -> RESULT spawn_seq <n> spawns/s  and/or  RESULT spawn_parK <n> spawns/s
const { spawn } = require('child_process');
const { count, now, secs, result, die } = require('./common');

const n = count(process.argv[2], 2000);
const mode = process.argv[3] || 'both';
const ms = process.argv[4] ? Number(process.argv[4]) : 0;

function run(width, name, next) {
  let started = 0;
  let done = 0;
  const t0 = now();
  const stop = ms ? t0 + BigInt(Math.floor(ms * 1e6)) : null;
  const more = () => started < n && (started === 0 || stop === null || now() < stop);
  const start = () => {
    started++;
    const child = spawn('/bin/true', [], { stdio: 'inherit' });
    child.on('exit', (code) => {
      if (code !== 0) die('/bin/true failed');
      done++;
      if (more()) {
        start();
      } else if (done === started) {
        result(name, done / secs(t0, now()), 'spawns/s');
        next();
      }
    });
  };
  for (let i = 0; i < width && more(); i++) start();
}

const k = /^par(\d+)$/.exec(mode);
if (mode === 'both') run(1, 'spawn_seq', () => run(8, 'spawn_par8', () => {}));
else if (mode === 'seq') run(1, 'spawn_seq', () => {});
else if (k && Number(k[1]) > 0) run(Number(k[1]), `spawn_par${k[1]}`, () => {});
