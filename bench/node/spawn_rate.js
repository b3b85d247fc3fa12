'use strict';
// spawn_rate (Node): spawn('/bin/true') and wait for 'exit', N times one
// after another ("seq") or N times keeping 8 in flight ("par8").
// stdio 'inherit' (no pipes), like the C and lipc sides.
//   node spawn_rate.js [spawns] [seq|par8|both]
//        -> RESULT spawn_seq <n> spawns/s  and/or  RESULT spawn_par8 <n> spawns/s
const { spawn } = require('child_process');
const { count, now, secs, result, die } = require('./common');

const n = count(process.argv[2], 2000);
const mode = process.argv[3] || 'both';

function run(width, name, next) {
  let started = 0;
  let done = 0;
  const t0 = now();
  const start = () => {
    started++;
    const child = spawn('/bin/true', [], { stdio: 'inherit' });
    child.on('exit', (code) => {
      if (code !== 0) die('/bin/true failed');
      if (++done === n) {
        result(name, n / secs(t0, now()), 'spawns/s');
        next();
      } else if (started < n) {
        start();
      }
    });
  };
  for (let i = 0; i < width && started < n; i++) start();
}

const par = () => { if (mode !== 'seq') run(8, 'spawn_par8', () => {}); };
if (mode !== 'par8') run(1, 'spawn_seq', par); else par();
