'use strict';
// Shared helpers of the Node side. Every case prints one line per figure:
//   RESULT <case> <value> <unit>
// Counts come from argv (run.sh passes them) or the default scaled by
// $BENCH_SCALE. IPC cases use child_process.fork with the default 'json'
// serialization unless $NODE_SERIALIZATION says 'advanced'.

const scale = Number(process.env.BENCH_SCALE) > 0 ? Number(process.env.BENCH_SCALE) : 1;

function count(arg, dflt) {
  if (arg !== undefined && arg !== '') return Number(arg);
  return Math.max(1, Math.floor(dflt * scale));
}

function now() {
  return process.hrtime.bigint();
}

function secs(t0, t1) {
  return Number(t1 - t0) / 1e9;
}

function result(name, value, unit, digits = 0) {
  process.stdout.write(`RESULT ${name} ${value.toFixed(digits)} ${unit}\n`);
}

function serialization() {
  return process.env.NODE_SERIALIZATION === 'advanced' ? 'advanced' : 'json';
}

// The small table every implementation sends.
function small(seq) {
  return { seq, op: 'add', args: [1, 2, 3] };
}

function die(msg) {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(1);
}

module.exports = { count, now, secs, result, serialization, small, die };
