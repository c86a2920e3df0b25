// moat ui benchmark (issue 16): does a connected dashboard slow the gateway? In one run, the real
// gateway process serves twenty tasks (policy files in a scratch moat home) and a client sends
// plain HTTP requests through it to a loopback upstream, as fast as it can, with a few in flight.
// moat ui's server runs in a process of its own, as `moat ui` does (bench/ui-dashboard.js); short
// rounds alternate without a page and with a page's live feed connected and reading every batch.
// Prints requests/s of both, their ratio per pair of rounds, the CPU the dashboard took per second
// of flood, what a page's opening costs, the time from an attempt to its live row, and the
// dashboard's heap after the flood. Not a test: nothing asserts a time.
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { auditBytes } from '../dist/gateway/audit.js';
import { benchHome, openFeed, startDashboardProcess } from './ui-page.js';
import { join } from 'node:path';

const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const rounds = Number(process.env.BENCH_ROUNDS ?? 10);
const inFlight = Number(process.env.BENCH_IN_FLIGHT ?? 8);
// Twenty tasks, as on a busy machine: `flood` floods, `probe` is timed, the rest are idle. The
// dashboard's live feed reads every task's audit file on each tick.
const TASKS = ['flood', 'probe', ...Array.from({ length: 18 }, (_, i) => `idle-${i + 1}`)];
const { home, taskDir, auditOf } = benchHome('moat-ui-bench-', TASKS);
const socketOf = (task) => join(home, 's', task, 'p.sock');
for (const task of TASKS) {
  writeFileSync(
    join(taskDir(task), 'egress', 'policy.json'),
    JSON.stringify({ task, repoKey: 'benchrepo', mode: 'allowlist', allow: ['127.0.0.1/32'], deny: [], socket: socketOf(task), audit: auditOf(task) }),
  );
}

const upstream = createServer((req, res) => res.end('ok'));
const port = await new Promise((resolve) => upstream.listen(0, '127.0.0.1', () => resolve(upstream.address().port)));
const gateway = fork(new URL('../dist/gateway/daemon.js', import.meta.url).pathname, [home], {
  stdio: 'inherit',
  env: { ...process.env, MOAT_AUDIT_MAX_BYTES: String(64 * 1024 ** 2) },
});
for (let i = 0; i < 200 && !TASKS.every((t) => existsSync(socketOf(t))); i += 1) await new Promise((r) => setTimeout(r, 50));

function once(task = 'flood', path = '/') {
  return new Promise((resolve, reject) => {
    const s = connect(socketOf(task));
    let got = '';
    s.on('data', (c) => (got += c));
    s.on('end', () => (got.includes('ok') ? resolve() : reject(new Error(got.slice(0, 200)))));
    s.on('error', reject);
    s.write(`GET http://127.0.0.1:${port}${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  });
}

async function flood() {
  const end = Date.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < end) {
        await once();
        done += 1;
      }
    }),
  );
  return done / seconds;
}

/** The gateway's CPU time so far in ms (/proc counts it in USER_HZ, 100 a second on Linux). */
function gatewayCpuMs() {
  const fields = readFileSync(`/proc/${gateway.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** A flood, and the gateway's CPU per request in it: does a page make the gateway's own work dearer? */
async function measuredFlood() {
  const start = gatewayCpuMs();
  const rate = await flood();
  return { rate, gatewayUs: ((gatewayCpuMs() - start) * 1000) / (rate * seconds) };
}

/**
 * A round with a page's live feed connected to the dashboard: the page's opening (the latest
 * attempts of every task) comes first and is measured apart from the steady feed during the flood.
 */
async function withFeed(dashboard, run) {
  let events = 0;
  let opened;
  const first = new Promise((resolve) => (opened = resolve));
  const start = await dashboard.cpu();
  const asked = performance.now();
  const feed = openFeed(dashboard.port, (event, now) => {
    if (!event.startsWith('event: egress')) return;
    if (events === 0) opened(now - asked);
    events += 1;
  });
  try {
    const openMs = await first;
    const before = await dashboard.cpu();
    const { rate, gatewayUs } = await run();
    const after = await dashboard.cpu();
    return { rate, gatewayUs, events, openMs, openCpuMs: before.cpuMs - start.cpuMs, cpuMsPerS: (after.cpuMs - before.cpuMs) / seconds };
  } finally {
    feed.destroy();
  }
}

// One dashboard process throughout, as `moat ui` stays up; its feed polls only while a page
// listens, so rounds without a page are rounds without a connected dashboard. Short rounds,
// alternating, many pairs: the load of a shared machine moves less within a pair.
const dashboard = await startDashboardProcess(home);
await flood(); // warm-up
const without = [];
const withUi = [];
const cpu = [];
const idleCpu = [];
const gatewayWithout = [];
const gatewayWith = [];
const opens = [];
let events = 0;
for (let round = 0; round < rounds; round += 1) {
  const idle = await dashboard.cpu();
  const w = await measuredFlood();
  without.push(w.rate);
  gatewayWithout.push(w.gatewayUs);
  idleCpu.push(((await dashboard.cpu()).cpuMs - idle.cpuMs) / seconds);
  const r = await withFeed(dashboard, measuredFlood);
  withUi.push(r.rate);
  gatewayWith.push(r.gatewayUs);
  cpu.push(r.cpuMsPerS);
  opens.push(r);
  events += r.events;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// From an attempt to its row: with the dashboard's live feed connected, `flood` sends at most
// 1,000 requests/s while `probe` sends one every 100 ms; each probe's time from its request to the
// batch that carries its audit line is one sample (the page renders a batch as it arrives).
const floodRate = Number(process.env.BENCH_FLOOD_RATE ?? 1000);
const probes = Number(process.env.BENCH_PROBES ?? 100);
const latency = await (async () => {
  const sent = [];
  const seen = [];
  const req = openFeed(dashboard.port, (event, now) => {
    if (!event.startsWith('event: egress')) return;
    const data = JSON.parse(event.slice(event.indexOf('data: ') + 6));
    // By path: a probe's row that never arrives (dropped in a flood) must not shift the others' times.
    for (const record of data.records) {
      const probe = record.task === 'probe' ? /^\/probe-(\d+)$/.exec(record.path ?? '') : null;
      if (probe && sent[Number(probe[1])] !== undefined && seen[Number(probe[1])] === undefined) seen[Number(probe[1])] = now - sent[Number(probe[1])];
    }
  });
  await new Promise((r) => setTimeout(r, 500));
  let stop = false;
  let flooded = 0;
  const started = performance.now();
  const flooders = Array.from({ length: inFlight }, async (_, worker) => {
    // Each worker keeps to its share of the rate.
    for (let i = 0; !stop; i += 1) {
      const due = started + ((i * inFlight + worker) * 1000) / floodRate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await once('flood');
      flooded += 1;
    }
  });
  for (let i = 0; i < probes; i += 1) {
    sent.push(performance.now());
    await once('probe', `/probe-${i}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const floodSeconds = (performance.now() - started) / 1000;
  stop = true;
  await Promise.all(flooders);
  const samples = () => seen.filter((t) => t !== undefined);
  for (let i = 0; i < 50 && samples().length < sent.length; i += 1) await new Promise((r) => setTimeout(r, 100));
  req.destroy();
  const { heapMiB } = await dashboard.heap();
  // A probe whose row never came counts as slower than any that did.
  const sorted = sent.map((_, i) => seen[i] ?? Infinity).sort((x, y) => x - y);
  return {
    p50: sorted[Math.floor(sorted.length / 2)],
    p95: sorted[Math.floor(sorted.length * 0.95)],
    seen: samples().length,
    rate: flooded / floodSeconds,
    heapMiB,
  };
})();

const a = median(without);
const b = median(withUi);
const pairs = withUi.map((w, i) => w / without[i]);
console.log(`gateway, plain HTTP through it, ${inFlight} in flight, ${rounds} rounds of ${seconds}s (median):`);
console.log(`  without dashboard   ${a.toFixed(0)} req/s`);
console.log(`  with dashboard      ${b.toFixed(0)} req/s  (live feed connected, ${events} batches received)`);
console.log(`  ratio with/without  ${(b / a).toFixed(3)}`);
// Each round with a dashboard against the round just before it: a shared machine's load moves less within a pair.
console.log(`  ratio per pair      median ${median(pairs).toFixed(3)} (${pairs.map((r) => r.toFixed(3)).join(' ')})`);
console.log(
  `  dashboard CPU       ${median(cpu).toFixed(1)} ms per s of flood with a page (median; ${cpu.map((c) => c.toFixed(1)).join(' ')}), ${median(idleCpu).toFixed(1)} ms without`,
);
console.log(
  `  gateway CPU         ${median(gatewayWithout).toFixed(0)} us per request without a page, ${median(gatewayWith).toFixed(0)} us with (medians: does a page make the gateway's own work dearer?)`,
);
console.log(
  `  page opening        ${median(opens.map((o) => o.openMs)).toFixed(0)} ms to the first batch, ${median(opens.map((o) => o.openCpuMs)).toFixed(0)} ms of the dashboard's CPU (median; logs of ${(auditBytes(auditOf('flood')) / 1024 ** 2).toFixed(0)} MiB at the end)`,
);
console.log(
  `attempt to live row, ${TASKS.length} tasks, flood at ${latency.rate.toFixed(0)} req/s (asked ${floodRate}): p50 ${latency.p50?.toFixed(0)} ms, p95 ${latency.p95?.toFixed(0)} ms over ${latency.seen}/${probes} probes`,
);
console.log(`  dashboard process heap after the flood (after a collection): ${latency.heapMiB.toFixed(1)} MiB`);
await dashboard.stop();
gateway.kill('SIGTERM');
upstream.close();
rmSync(home, { recursive: true, force: true });
