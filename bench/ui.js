// moat ui benchmark (issue 16): does a connected dashboard slow the gateway? In one run, the real
// gateway process serves one task (a policy file in a scratch moat home) and a client sends plain
// HTTP requests through it to a loopback upstream, as fast as it can, with a few in flight; rounds
// alternate without a dashboard and with one (moat ui's server in this process, a page's live
// feed connected and reading every batch). Prints requests/s of both and their ratio, and the
// dashboard's heap after the flood. Not a test: nothing asserts a time.
import { fork } from 'node:child_process';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MoatContext } from '../dist/service/context.js';
import { startDashboard } from '../dist/ui/server.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const inFlight = Number(process.env.BENCH_IN_FLIGHT ?? 8);
const home = mkdtempSync(join(tmpdir(), 'moat-ui-bench-'));
// Twenty tasks, as on a busy machine: `flood` floods, `probe` is timed, the rest are idle. The
// dashboard's live feed reads every task's audit file on each tick.
const TASKS = ['flood', 'probe', ...Array.from({ length: 18 }, (_, i) => `idle-${i + 1}`)];
const socketOf = (task) => join(home, 's', task, 'p.sock');
const auditOf = (task) => join(home, 'repos', 'benchrepo', 'tasks', task, 'egress', 'audit.jsonl');
for (const task of TASKS) {
  const taskDir = join(home, 'repos', 'benchrepo', 'tasks', task);
  mkdirSync(join(taskDir, 'egress'), { recursive: true });
  writeFileSync(
    join(taskDir, 'task.json'),
    JSON.stringify({
      name: task,
      repoKey: 'benchrepo',
      repoPath: home,
      state: 'running',
      createdAt: new Date().toISOString(),
      branch: `moat/${task}`,
      limits: {},
      network: 'allowlist',
    }),
  );
  writeFileSync(
    join(taskDir, 'egress', 'policy.json'),
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

const ctx = new MoatContext({ env: { ...process.env, MOAT_HOME: home, MOAT_CONFIG: join(home, 'config.yaml') }, cwd: home });
const token = 'bench-token-0123456789abcdef';
async function withDashboard(run) {
  const dashboard = await startDashboard(ctx, { token, env: ctx.env });
  const { port: uiPort } = new URL(dashboard.url);
  let events = 0;
  const req = request(
    { host: '127.0.0.1', port: uiPort, path: '/api/events', headers: { Cookie: `moat_ui_${uiPort}=${token}`, Host: `127.0.0.1:${uiPort}` } },
    (res) => res.on('data', (c) => (events += String(c).split('event: egress').length - 1)),
  );
  req.end();
  try {
    return { rate: await run(), events };
  } finally {
    req.destroy();
    await dashboard.close();
  }
}

await flood(); // warm-up
const without = [];
const withUi = [];
let events = 0;
for (let round = 0; round < rounds; round += 1) {
  without.push(await flood());
  const r = await withDashboard(flood);
  withUi.push(r.rate);
  events += r.events;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// From an attempt to its row: with the dashboard's live feed connected, `flood` sends at most
// 1,000 requests/s while `probe` sends one every 100 ms; each probe's time from its request to the
// batch that carries its audit line is one sample (the page renders a batch as it arrives).
const floodRate = Number(process.env.BENCH_FLOOD_RATE ?? 1000);
const probes = Number(process.env.BENCH_PROBES ?? 100);
const latency = await (async () => {
  const dashboard = await startDashboard(ctx, { token, env: ctx.env });
  const { port: uiPort } = new URL(dashboard.url);
  const sent = [];
  const samples = [];
  let buffered = '';
  const req = request(
    { host: '127.0.0.1', port: uiPort, path: '/api/events', headers: { Cookie: `moat_ui_${uiPort}=${token}`, Host: `127.0.0.1:${uiPort}` } },
    (res) =>
      res.on('data', (chunk) => {
        const now = performance.now();
        buffered += String(chunk);
        let end;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const event = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          if (!event.startsWith('event: egress')) continue;
          const data = JSON.parse(event.slice(event.indexOf('data: ') + 6));
          for (const record of data.records) if (record.task === 'probe' && samples.length < sent.length) samples.push(now - sent[samples.length]);
        }
      }),
  );
  req.end();
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
  for (let i = 0; i < 50 && samples.length < sent.length; i += 1) await new Promise((r) => setTimeout(r, 100));
  req.destroy();
  await dashboard.close();
  const sorted = [...samples].sort((x, y) => x - y);
  return { p50: sorted[Math.floor(sorted.length / 2)], p95: sorted[Math.floor(sorted.length * 0.95)], seen: samples.length, rate: flooded / floodSeconds };
})();

const a = median(without);
const b = median(withUi);
global.gc?.();
console.log(`gateway, plain HTTP through it, ${inFlight} in flight, ${rounds} rounds of ${seconds}s (median):`);
console.log(`  without dashboard   ${a.toFixed(0)} req/s`);
console.log(`  with dashboard      ${b.toFixed(0)} req/s  (live feed connected, ${events} batches received)`);
console.log(`  ratio with/without  ${(b / a).toFixed(3)}`);
console.log(
  `attempt to live row, ${TASKS.length} tasks, flood at ${latency.rate.toFixed(0)} req/s (asked ${floodRate}): p50 ${latency.p50?.toFixed(0)} ms, p95 ${latency.p95?.toFixed(0)} ms over ${latency.seen}/${probes} probes`,
);
console.log(`  dashboard process heap after the flood: ${(process.memoryUsage().heapUsed / 1024 ** 2).toFixed(1)} MiB`);
gateway.kill('SIGTERM');
upstream.close();
rmSync(home, { recursive: true, force: true });
