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
const taskDir = join(home, 'repos', 'benchrepo', 'tasks', 'flood');
mkdirSync(join(taskDir, 'egress'), { recursive: true });
const socket = join(home, 's', 'bench', 'p.sock');
const audit = join(taskDir, 'egress', 'audit.jsonl');
writeFileSync(
  join(taskDir, 'task.json'),
  JSON.stringify({
    name: 'flood',
    repoKey: 'benchrepo',
    repoPath: home,
    state: 'running',
    createdAt: new Date().toISOString(),
    branch: 'moat/flood',
    limits: {},
    network: 'allowlist',
  }),
);
writeFileSync(
  join(taskDir, 'egress', 'policy.json'),
  JSON.stringify({ task: 'flood', repoKey: 'benchrepo', mode: 'allowlist', allow: ['127.0.0.1/32'], deny: [], socket, audit }),
);

const upstream = createServer((req, res) => res.end('ok'));
const port = await new Promise((resolve) => upstream.listen(0, '127.0.0.1', () => resolve(upstream.address().port)));
const gateway = fork(new URL('../dist/gateway/daemon.js', import.meta.url).pathname, [home], {
  stdio: 'inherit',
  env: { ...process.env, MOAT_AUDIT_MAX_BYTES: String(64 * 1024 ** 2) },
});
for (let i = 0; i < 100 && !existsSync(socket); i += 1) await new Promise((r) => setTimeout(r, 50));

function once() {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let got = '';
    s.on('data', (c) => (got += c));
    s.on('end', () => (got.includes('ok') ? resolve() : reject(new Error(got.slice(0, 200)))));
    s.on('error', reject);
    s.write(`GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
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
const a = median(without);
const b = median(withUi);
global.gc?.();
console.log(`gateway, plain HTTP through it, ${inFlight} in flight, ${rounds} rounds of ${seconds}s (median):`);
console.log(`  without dashboard   ${a.toFixed(0)} req/s`);
console.log(`  with dashboard      ${b.toFixed(0)} req/s  (live feed connected, ${events} batches received)`);
console.log(`  ratio with/without  ${(b / a).toFixed(3)}`);
console.log(`  dashboard process heap after the flood: ${(process.memoryUsage().heapUsed / 1024 ** 2).toFixed(1)} MiB`);
gateway.kill('SIGTERM');
upstream.close();
rmSync(home, { recursive: true, force: true });
