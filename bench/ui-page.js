// For the moat ui benchmarks: a dashboard in a process of its own (bench/ui-dashboard.js, as
// `moat ui` runs) and a page's live feed on it.
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const token = 'bench-token-0123456789abcdef';

/** Starts the dashboard process on `home`; `cpu` and `heap` ask it for its figures. */
export async function startDashboardProcess(home) {
  const child = fork(new URL('./ui-dashboard.js', import.meta.url).pathname, [home, token], {
    // BENCH_DASHBOARD_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR' profiles the dashboard alone.
    execArgv: ['--expose-gc', ...(process.env.BENCH_DASHBOARD_NODE_ARGS?.split(' ').filter(Boolean) ?? [])],
    stdio: 'inherit',
  });
  const ask = (message) =>
    new Promise((resolve) => {
      child.once('message', resolve);
      if (message) child.send(message);
    });
  const { url } = await ask();
  const stop = async () => {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.send('close');
    await exited;
  };
  return { port: new URL(url).port, cpu: () => ask('cpu'), heap: () => ask('heap'), stop };
}

/** A page's live feed: calls `onEvent` with each server-sent event's text and when it arrived. */
export function openFeed(port, onEvent) {
  let buffered = '';
  const req = request({ host: '127.0.0.1', port, path: '/api/events', headers: { Cookie: `moat_ui_${port}=${token}`, Host: `127.0.0.1:${port}` } }, (res) =>
    res.on('data', (chunk) => {
      const now = performance.now();
      buffered += String(chunk);
      let end;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        onEvent(buffered.slice(0, end), now);
        buffered = buffered.slice(end + 2);
      }
    }),
  );
  req.end();
  return req;
}

/** A scratch moat home with these tasks' records (running, one repository), and where each task's audit log is. */
export function benchHome(prefix, tasks) {
  const home = mkdtempSync(join(tmpdir(), prefix));
  const taskDir = (task) => join(home, 'repos', 'benchrepo', 'tasks', task);
  for (const task of tasks) {
    mkdirSync(join(taskDir(task), 'egress'), { recursive: true });
    writeFileSync(
      join(taskDir(task), 'task.json'),
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
  }
  return { home, taskDir, auditOf: (task) => join(taskDir(task), 'egress', 'audit.jsonl') };
}
