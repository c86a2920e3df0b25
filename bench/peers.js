// Side by side with the peers (issue 8): the same one-shot command and the same exec on a running
// environment under moat, a plain `docker run` (same hardening flags), the devcontainer CLI and
// Anthropic's sandbox-runtime (srt), alternating in one run, all on the same local image where an
// image is used. Prints a table with medians, spread and ratios, and writes bench/results/peers.json.
// Not a test: nothing asserts a time.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { serverEnv, settle, stopServers } from './warm-server.js';
import { timed } from './timed.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 10);
const here = import.meta.dirname;
const bin = join(here, '..', 'bin', 'moat.js');
const devcontainer = resolve(here, '..', 'node_modules', '@devcontainers', 'cli', 'devcontainer.js');
const srt = resolve(here, '..', 'node_modules', '@anthropic-ai', 'sandbox-runtime', 'dist', 'cli.js');
const node22 = resolve(here, '..', '.peers', 'node22');
const root = mkdtempSync(join(tmpdir(), 'moat-peers-'));
const repo = join(root, 'repo');
mkdirSync(join(repo, '.devcontainer'), { recursive: true });
const image = 'moat-base:bookworm';
writeFileSync(join(repo, '.devcontainer', 'devcontainer.json'), JSON.stringify({ image, runArgs: ['--network=none', '--label=moat.task=peers-bench'] }));
writeFileSync(join(repo, 'f'), 'x\n');
execFileSync('git', ['init', '-q', repo]);
execFileSync('git', ['add', '-A'], { cwd: repo });
execFileSync('git', ['-c', 'user.name=b', '-c', 'user.email=b@b.invalid', 'commit', '-qm', 'init'], { cwd: repo });
const env = { ...process.env, MOAT_HOME: join(root, 'home'), MOAT_CONFIG: join(root, 'config.yaml'), ...serverEnv(root) };
writeFileSync(
  join(root, 'srt-settings.json'),
  JSON.stringify({ network: { allowedDomains: ['example.invalid'], deniedDomains: [] }, filesystem: { denyRead: [], allowWrite: [repo], denyWrite: [] } }),
);

const moat = (args) => timed(process.execPath, [bin, ...args], { cwd: repo, env });
const uid = '1000:1000';
const hardened = [
  '--network',
  'none',
  '--read-only',
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges',
  '--init',
  '--user',
  uid,
  '--memory',
  '2g',
  '--memory-swap',
  '2g',
  '--pids-limit',
  '512',
  '--label',
  'moat.task=peers-bench',
];
const devcontainerCleanup = () => spawnSync('sh', ['-c', 'docker rm -f $(docker ps -aq --filter label=moat.task=peers-bench) >/dev/null 2>&1']);

const oneShot = {
  'moat run --rm -- true': () => moat(['run', '--rm', '--', 'true']),
  'docker run --rm (same flags)': () => timed('docker', ['run', '--rm', ...hardened, image, 'true']),
  'devcontainer up + exec (then removed)': () => {
    const t =
      timed(process.execPath, [devcontainer, 'up', '--workspace-folder', repo, '--remove-existing-container']) +
      timed(process.execPath, [devcontainer, 'exec', '--workspace-folder', repo, 'true']);
    devcontainerCleanup();
    return t;
  },
  'srt -c true (network allowlist, no container)': () => timed(node22, [srt, '--settings', join(root, 'srt-settings.json'), '-c', 'true'], { cwd: repo }),
};
const withNetwork = {
  'moat run --rm --allow example.invalid -- true': (i) => moat(['run', '--rm', '--task', `n${i}`, '--allow', 'example.invalid', '--', 'true']),
  'srt -c true (network allowlist, no container)': () => timed(node22, [srt, '--settings', join(root, 'srt-settings.json'), '-c', 'true'], { cwd: repo }),
};

function runGroup(group) {
  const samples = Object.fromEntries(Object.keys(group).map((k) => [k, []]));
  for (let i = 0; i < rounds; i += 1) {
    for (const [name, fn] of Object.entries(group)) {
      samples[name].push(fn(i));
      settle();
    }
  }
  return samples;
}
const results = { 'one-shot, network off': runGroup(oneShot), 'one-shot, network through an allowlist': runGroup(withNetwork) };

// Running environments for the exec comparison (made after the one-shot rounds, which clean up theirs).
let dockerId = '';
const cleanup = () => {
  spawnSync(process.execPath, [bin, 'rm', '--force', 'warm'], { cwd: repo, env, stdio: 'ignore' });
  if (dockerId) spawnSync('docker', ['rm', '-f', dockerId], { stdio: 'ignore' });
  devcontainerCleanup();
  try {
    process.kill(Number(execFileSync('cat', [join(env.MOAT_HOME, 'gateway', 'pid')], { encoding: 'utf8' })), 'SIGTERM');
  } catch {
    /* already gone */
  }
  stopServers(root);
  rmSync(root, { recursive: true, force: true });
};
process.on('exit', cleanup);
execFileSync(process.execPath, [bin, 'up', '--task', 'warm'], { cwd: repo, env, stdio: 'ignore' });
dockerId = execFileSync('docker', ['run', '-d', ...hardened, image, 'sleep', 'infinity'], { encoding: 'utf8' }).trim();
execFileSync(process.execPath, [devcontainer, 'up', '--workspace-folder', repo, '--remove-existing-container'], { stdio: 'ignore' });
const execs = {
  'moat exec (then sync)': () => moat(['exec', 'warm', '--', 'true']),
  'moat exec --no-sync': () => moat(['exec', 'warm', '--no-sync', '--', 'true']),
  'docker exec': () => timed('docker', ['exec', dockerId, 'true']),
  'devcontainer exec': () => timed(process.execPath, [devcontainer, 'exec', '--workspace-folder', repo, 'true']),
};

results['exec on a running environment'] = runGroup(execs);
cleanup();
process.off('exit', cleanup);

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => sorted(xs)[Math.floor(xs.length / 2)];
const pct = (xs, p) => sorted(xs)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const machine = `${cpus().length} cores, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, node ${process.version}, docker ${execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8' }).trim()}`;
console.log(`machine: ${machine}; ${rounds} rounds per scenario, alternating within each group`);
const json = { date: new Date().toISOString(), machine, rounds, groups: {} };
for (const [group, samples] of Object.entries(results)) {
  const base = median(Object.values(samples)[0]);
  console.log(`\n${group}\n| scenario | median ms | p10 | p90 | vs first row |\n|---|---|---|---|---|`);
  json.groups[group] = {};
  for (const [name, xs] of Object.entries(samples)) {
    console.log(`| ${name} | ${median(xs).toFixed(0)} | ${pct(xs, 10).toFixed(0)} | ${pct(xs, 90).toFixed(0)} | ${(median(xs) / base).toFixed(2)} |`);
    json.groups[group][name] = { median: median(xs), p10: pct(xs, 10), p90: pct(xs, 90) };
  }
}
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(join(here, 'results', 'peers.json'), JSON.stringify(json, null, 2));
