// The live feed's own cost, without a gateway: twenty tasks' audit logs in a scratch moat home, a
// dashboard process (bench/ui-dashboard.js) with a page's feed connected; its CPU per second while
// the logs are quiet, then while one of them grows by BENCH_FLOOD_RATE lines/s (written here, as
// the gateway writes them). Not a test: nothing asserts a time.
import { rmSync } from 'node:fs';
import { appendAudit } from '../dist/gateway/audit.js';
import { benchHome, openFeed, startDashboardProcess } from './ui-page.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rate = Number(process.env.BENCH_FLOOD_RATE ?? 1000);
const TASKS = ['flood', ...Array.from({ length: 19 }, (_, i) => `idle-${i + 1}`)];
const { home, auditOf } = benchHome('moat-ui-feed-', TASKS);
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

const dashboard = await startDashboardProcess(home);
let rows = 0;
const feed = openFeed(dashboard.port, (event) => {
  if (event.startsWith('event: egress')) rows += JSON.parse(event.slice(event.indexOf('data: ') + 6)).records.length;
});
await new Promise((r) => setTimeout(r, 1000));

async function cpuPerSecond(during) {
  const before = (await dashboard.cpu()).cpuMs;
  await during();
  return ((await dashboard.cpu()).cpuMs - before) / seconds;
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
await dashboard.stop();
rmSync(home, { recursive: true, force: true });
