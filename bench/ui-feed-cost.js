// The live feed's own cost, without a gateway: twenty tasks' audit logs in a scratch moat home, a
// dashboard process (bench/ui-dashboard.js) with a page's feed connected; its CPU per second while
// the logs are quiet, then while one of them grows by BENCH_FLOOD_RATE lines/s (written here, as
// the gateway writes them). Not a test: nothing asserts a time.
import { fork } from 'node:child_process';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendAudit } from '../dist/gateway/audit.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rate = Number(process.env.BENCH_FLOOD_RATE ?? 1000);
const home = mkdtempSync(join(tmpdir(), 'moat-ui-feed-'));
const TASKS = ['flood', ...Array.from({ length: 19 }, (_, i) => `idle-${i + 1}`)];
const auditOf = (task) => join(home, 'repos', 'benchrepo', 'tasks', task, 'egress', 'audit.jsonl');
for (const task of TASKS) {
  const taskDir = join(home, 'repos', 'benchrepo', 'tasks', task);
  mkdirSync(join(taskDir, 'egress'), { recursive: true });
  writeFileSync(
    join(taskDir, 'task.json'),
    JSON.stringify({ name: task, repoKey: 'benchrepo', repoPath: home, state: 'running', createdAt: new Date().toISOString() }),
  );
}
const attempt = (i) => ({
  time: new Date().toISOString(),
  task: 'flood',
  method: 'GET',
  host: '127.0.0.1',
  port: 8080,
  path: `/flood-${i}`,
  address: '127.0.0.1',
  decision: 'allowed',
  rule: '127.0.0.1/32',
  bytesUp: 80,
  bytesDown: 40,
  durationMs: 1,
});
// A log of some size already, as after a while of work.
for (let i = 0; i < 20_000; i += 1) appendAudit(auditOf('flood'), attempt(i), [], 64 * 1024 ** 2);

const token = 'bench-token-0123456789abcdef';
const child = fork(new URL('./ui-dashboard.js', import.meta.url).pathname, [home, token], {
  execArgv: process.env.BENCH_DASHBOARD_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
  stdio: 'inherit',
});
const ask = (message) =>
  new Promise((resolve) => {
    child.once('message', resolve);
    if (message) child.send(message);
  });
const { url } = await ask();
const port = new URL(url).port;
let rows = 0;
let buffered = '';
const feed = request({ host: '127.0.0.1', port, path: '/api/events', headers: { Cookie: `moat_ui_${port}=${token}`, Host: `127.0.0.1:${port}` } }, (res) =>
  res.on('data', (chunk) => {
    buffered += String(chunk);
    let end;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (event.startsWith('event: egress')) rows += JSON.parse(event.slice(event.indexOf('data: ') + 6)).records.length;
    }
  }),
);
feed.end();
await new Promise((r) => setTimeout(r, 1000));

async function cpuPerSecond(during) {
  const before = (await ask('cpu')).cpuMs;
  await during();
  return ((await ask('cpu')).cpuMs - before) / seconds;
}
const quiet = await cpuPerSecond(() => new Promise((r) => setTimeout(r, seconds * 1000)));
let written = 0;
const flooding = await cpuPerSecond(async () => {
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate);
    for (; written < due; written += 1) appendAudit(auditOf('flood'), attempt(20_000 + written), [], 64 * 1024 ** 2);
    await new Promise((r) => setTimeout(r, 5));
  }
});
await new Promise((r) => setTimeout(r, 1000)); // the last batch
console.log(
  `live feed, ${TASKS.length} tasks, dashboard CPU per second: quiet ${quiet.toFixed(1)} ms, one log growing by ${rate}/s ${flooding.toFixed(1)} ms (${written} lines written, ${rows} rows received, the first 200 at the opening)`,
);
feed.destroy();
child.send('close');
rmSync(home, { recursive: true, force: true });
