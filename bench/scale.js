// Scale benchmark (issue 7): fifty idle tasks at once — the memory moat's own processes add per
// task (the gateway is the only moat process that stays; the engine's per-container cost is not
// counted) — and twenty tasks started in parallel against twenty parallel `docker run -d` with
// the same flags, alternating. Not a test: nothing asserts a time.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverEnv, serverPids, stopServers } from './warm-server.js';

const idle = Number(process.env.BENCH_IDLE ?? 50);
const parallel = Number(process.env.BENCH_PARALLEL ?? 20);
const bin = join(import.meta.dirname, '..', 'bin', 'moat.js');
const root = mkdtempSync(join(tmpdir(), 'moat-scale-'));
const repo = join(root, 'repo');
mkdirSync(repo);
execFileSync('git', ['init', '-q', repo]);
writeFileSync(join(repo, 'f'), 'x\n');
execFileSync('git', ['add', '-A'], { cwd: repo });
execFileSync('git', ['-c', 'user.name=b', '-c', 'user.email=b@b.invalid', 'commit', '-qm', 'init'], { cwd: repo });
const env = { ...process.env, MOAT_HOME: join(root, 'home'), MOAT_CONFIG: join(root, 'config.yaml'), ...serverEnv(root) };
// Whatever happens, leave nothing behind: this run's containers carry its home's label.
const { TaskStore } = await import('../dist/state/task-store.js');
const homeKey = new TaskStore(env.MOAT_HOME).homeKey;
process.on('exit', () => {
  stopServers(root);
  spawnSync('sh', ['-c', `docker rm -f $(docker ps -aq --filter label=moat.home=${homeKey}) $(docker ps -aq --filter label=moat.task=scale) >/dev/null 2>&1`]);
  spawnSync('sh', ['-c', `for m in $(grep -o '${root}/[^ ]*/volume' /proc/self/mountinfo); do umount -l "$m"; done`]);
  try {
    process.kill(Number(readFileSync(join(env.MOAT_HOME, 'gateway', 'pid'), 'utf8')), 'SIGTERM');
  } catch {
    /* already gone */
  }
  rmSync(root, { recursive: true, force: true });
});
writeFileSync(env.MOAT_CONFIG, 'network: allowlist\negress:\n  allow: [registry.npmjs.org]\n');

const moat = (args, extraEnv = {}) =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: repo, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`moat ${args.join(' ')}: ${err}`))));
  });
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const gatewayPid = () => Number(readFileSync(join(env.MOAT_HOME, 'gateway', 'pid'), 'utf8'));

// Memory: one task starts the gateway (and the CLI's warm server); then 49 more. RSS of moat's
// processes before and after.
await moat(['up', '--task', 'idle-0']);
for (let i = 0; i < 50 && serverPids(root).length === 0; i += 1) await new Promise((r) => setTimeout(r, 100));
const moatRss = () => rssKiB(gatewayPid()) + serverPids(root).reduce((sum, pid) => sum + rssKiB(pid), 0);
const before = moatRss();
for (let i = 1; i < idle; i += 1) await moat(['up', '--task', `idle-${i}`]);
const after = moatRss();
const perTaskMiB = (after - before) / 1024 / (idle - 1);
console.log(
  `idle tasks: ${idle}; moat processes left running: ${1 + serverPids(root).length} (the gateway, the CLI's warm server), RSS ${(before / 1024).toFixed(1)} MiB with 1 task, ${(after / 1024).toFixed(1)} MiB with ${idle}`,
);
console.log(`memory moat adds per task: ${perTaskMiB.toFixed(2)} MiB (goal <= 30 MiB; tasks with network none add no moat process at all)`);
await Promise.all(Array.from({ length: idle }, (_, i) => moat(['rm', '--force', `idle-${i}`])));

// Twenty in parallel: moat up vs docker run -d, alternating.
const image = JSON.parse(execFileSync(process.execPath, [bin, 'up', '--task', 'probe', '--json'], { cwd: repo, env, encoding: 'utf8' })).image;
await moat(['rm', '--force', 'probe']);
const dockerArgs = (i) => [
  'run',
  '-d',
  '--name',
  `moat-scale-${i}`,
  '--label',
  'moat.task=scale',
  '--network',
  'none',
  '--read-only',
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges',
  '--init',
  '--user',
  '1000:1000',
  '--memory',
  '2g',
  '--memory-swap',
  '2g',
  '--pids-limit',
  '512',
  '--tmpfs',
  '/tmp:size=512m',
  '--tmpfs',
  '/home/agent:size=512m',
  image,
  'sleep',
  'infinity',
];
const timeIt = async (fn) => {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
};
const samples = { moat: [], cold: [], docker: [] };
for (let round = 0; round < 3; round += 1) {
  samples.moat.push(await timeIt(() => Promise.all(Array.from({ length: parallel }, (_, i) => moat(['up', '--task', `p-${round}-${i}`])))));
  await Promise.all(Array.from({ length: parallel }, (_, i) => moat(['rm', '--force', `p-${round}-${i}`])));
  // Each command in a Node process of its own, as without the warm server.
  samples.cold.push(
    await timeIt(() => Promise.all(Array.from({ length: parallel }, (_, i) => moat(['up', '--task', `c-${round}-${i}`], { MOAT_SERVER: 'off' })))),
  );
  await Promise.all(Array.from({ length: parallel }, (_, i) => moat(['rm', '--force', `c-${round}-${i}`])));
  samples.docker.push(
    await timeIt(() =>
      Promise.all(
        Array.from(
          { length: parallel },
          (_, i) =>
            new Promise((resolve, reject) => {
              const c = spawn('docker', dockerArgs(`${round}-${i}`), { stdio: 'ignore' });
              c.on('close', (code) => (code === 0 ? resolve() : reject(new Error('docker run failed'))));
            }),
        ),
      ),
    ),
  );
  execFileSync('sh', ['-c', 'docker rm -f $(docker ps -aq --filter label=moat.task=scale) >/dev/null']);
}
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`| ${parallel} in parallel | median ms | runs |\n|---|---|---|`);
console.log(
  `| moat up (network allowlist: gateway, capped volume, task repository) | ${med(samples.moat).toFixed(0)} | ${samples.moat.map((x) => x.toFixed(0)).join(', ')} |`,
);
console.log(
  `| moat up, MOAT_SERVER=off (each command its own Node process) | ${med(samples.cold).toFixed(0)} | ${samples.cold.map((x) => x.toFixed(0)).join(', ')} |`,
);
console.log(`| docker run -d (same flags) | ${med(samples.docker).toFixed(0)} | ${samples.docker.map((x) => x.toFixed(0)).join(', ')} |`);
console.log(
  `ratio: ${(med(samples.moat) / med(samples.docker)).toFixed(2)} (goal <= 1.3); without the warm server ${(med(samples.cold) / med(samples.docker)).toFixed(2)}`,
);
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(
  join(import.meta.dirname, 'results', 'scale.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      idle,
      perTaskMiB,
      parallel,
      moatMs: samples.moat,
      coldMs: samples.cold,
      dockerMs: samples.docker,
      ratio: med(samples.moat) / med(samples.docker),
    },
    null,
    2,
  ),
);
