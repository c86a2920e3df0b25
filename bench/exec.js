// `moat exec TASK -- true` against `docker exec <the same container> true` (issue 18), alternating
// in one run so that both see the same machine state. Both run the same `true` in the task's own
// container; moat's row is what a user types (bin/moat: the native client when it is built, the
// warm server, the sync of the task's work included, which comes right after the status). Extra
// rows say where the time goes.
// Prints medians, spread and ratios, and writes bench/results/exec.json. Not a test: nothing asserts a time.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { serverEnv, settle, stopServers } from './warm-server.js';
import { timed } from './timed.js';
import { machine, printRows } from './figures.js';
import { benchHome } from './repo.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 20);
const bin = join(import.meta.dirname, '..', 'bin', 'moat.js');
// The command a user runs (package.json "bin").
const launcher = join(import.meta.dirname, '..', 'bin', 'moat');
if (!existsSync(join(import.meta.dirname, '..', 'dist', 'native', 'moat-client')))
  console.log('note: dist/native/moat-client is not built (no C compiler?): bin/moat starts Node for exec too');
const { repo, env } = await benchHome('moat-bench-exec-', serverEnv, stopServers);

const up = JSON.parse(execFileSync(process.execPath, [bin, 'up', '--task', 'warm', '--json'], { cwd: repo, env, encoding: 'utf8' }));
const container = up.containerId;
const user = `${up.user.uid}:${up.user.gid}`;
const moat =
  (args, extra = {}) =>
  () =>
    timed(process.execPath, [bin, ...args], { cwd: repo, env: { ...env, ...extra } });
const moatCommand = (args) => () => timed(launcher, args, { cwd: repo, env });
const scenarios = {
  'moat exec warm -- true (bin/moat, warm server, sync after the status)': moatCommand(['exec', 'warm', '--', 'true']),
  'docker exec (same container, same user and workdir)': () => timed('docker', ['exec', '-u', user, '-w', '/workspace', container, 'true']),
  'moat exec --no-sync (bin/moat, warm server)': moatCommand(['exec', 'warm', '--no-sync', '--', 'true']),
  'node bin/moat.js exec (the Node client, warm server)': moat(['exec', 'warm', '--', 'true']),
  'moat exec, MOAT_SERVER=off (own Node process, sync included)': moat(['exec', 'warm', '--', 'true'], { MOAT_SERVER: 'off' }),
  'node -e 0 (the floor of any Node client)': () => timed(process.execPath, ['-e', '0']),
};
// One unmeasured round: the server starts, and each path's caches fill.
for (const run of Object.values(scenarios)) run();
settle();
const samples = Object.fromEntries(Object.keys(scenarios).map((k) => [k, []]));
for (let i = 0; i < rounds; i += 1) {
  for (const [name, run] of Object.entries(scenarios)) {
    samples[name].push(run());
    settle();
  }
}
const where = machine();
const { rows, docker } = printRows(samples, rounds, where);
console.log(`ratio moat exec / docker exec (median): ${(rows[0].median / docker).toFixed(2)} (goal <= 1.1)`);
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(
  join(import.meta.dirname, 'results', 'exec.json'),
  JSON.stringify({ date: new Date().toISOString(), machine: where, rounds, rows, ratio: rows[0].median / docker }, null, 2),
);
