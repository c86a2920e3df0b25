// What a git child costs the event loop of a Node process as large as the warm server, against
// reading HEAD from git's files (src/workspace/head-file.ts): `npm run build && node
// bench/fork-stall.js [MB of live objects, default 0 150 400]`. spawn() forks the whole process
// (uv_spawn), and while it does the loop runs nothing; the file reads go through libuv's pool.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { headFromFiles } = await import(join(root, 'dist/workspace/head-file.js'));
// A repository of the plain layout the file reader reads (a checkout's own .git).
const repo = mkdtempSync(join(tmpdir(), 'moat-bench-fork-'));
process.on('exit', () => rmSync(repo, { recursive: true, force: true }));
const env = { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' };
execFileSync('git', ['init', '-q', repo]);
execFileSync('git', ['commit', '-q', '--allow-empty', '-m', 'one'], { cwd: repo, env });
const sizes = process.argv.slice(2).map(Number);
const keep = [];
for (const mb of sizes.length > 0 ? sizes : [0, 150, 400]) {
  while (keep.length < mb) keep.push(Array.from({ length: 4096 }, (_, j) => ({ j, s: `x${j}` })));
  const blocked = [];
  const whole = [];
  const files = [];
  for (let i = 0; i < 20; i += 1) {
    const t0 = performance.now();
    const child = spawn('git', ['rev-parse', 'HEAD'], { cwd: repo, stdio: 'ignore' });
    blocked.push(performance.now() - t0);
    await new Promise((resolve) => child.on('close', resolve));
    whole.push(performance.now() - t0);
    const t1 = performance.now();
    if (!(await headFromFiles(repo, join(repo, '.git')))) throw new Error('HEAD not read from the files');
    files.push(performance.now() - t1);
  }
  const median = (values) => values.sort((a, b) => a - b)[values.length >> 1].toFixed(1);
  console.log(
    `rss ${Math.round(process.memoryUsage().rss / 1e6)} MB: spawn() blocks the loop ${median(blocked)} ms (median of 20), the git child ${median(whole)} ms; HEAD from the files ${median(files)} ms`,
  );
}
