// moat's benchmark: `moat run -- true` (network off, cached image, task repository created and
// removed) against `docker run --rm` with the same hardening flags, alternating the two in one
// run so that both see the same machine state. Prints medians, spread and the ratio, and writes
// bench/results/latest.json. Not a test: nothing here asserts a time.
// With BENCH_REMOTE=tcp://host:port (scripts/setup-remote-engine.sh gives tcp://127.0.0.1:23750), two
// more rows: `moat run --rm -- true` on that engine (its own home and warm server) against
// `docker run --rm` on the same engine, same flags and image (no host folder: the engine has none).
// With BENCH_GVISOR=1 (runsc registered: scripts/setup-gvisor.sh), two more: `moat run --rm -- true`
// with MOAT_ISOLATION=gvisor against `docker run --rm --runtime runsc` with the same flags (goal <= 1.3),
// and a third, the same with MOAT_POOL=off (nothing made ahead: what gVisor tasks cost before they were).
// BENCH_GVISOR=only runs these three rows alone (a shorter run; the runc rows are skipped).
// With BENCH_PODMAN=1 (Podman's API service running: scripts/setup-podman.sh rootful, or rootless as the
// user who runs the benchmark), four more: `moat run --rm -- true` on Podman (its own home and warm
// server, pool on and off, and MOAT_SERVER=off) against `podman run --rm` with the flags moat gives
// Podman (runc, explicit nproc, keep-id when rootless). BENCH_PODMAN=only runs these four alone.
// BENCH_SAMPLES=1 prints each row's rounds in order.
// BENCH_BEFORE=/path/to/another/bin/moat.js (main built in another folder): that build's pooled
// `moat run --rm -- true` (its own home and warm server) alternates in the same rounds, on Docker
// and, with BENCH_PODMAN, on Podman, so a change is measured against its base in one run.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { serverEnv, settle, stopServers } from './warm-server.js';
import { timed } from './timed.js';
import { benchRepo } from './repo.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 15);
const bin = join(import.meta.dirname, '..', 'bin', 'moat.js');
const root = mkdtempSync(join(tmpdir(), 'moat-bench-'));
const repo = benchRepo(root);
// Every row with a server of its own keeps it: with BENCH_GVISOR=1 there are four, past the default cap
// of three, and each start would retire the least recently used, the very one the next row needs.
const env = { ...process.env, MOAT_HOME: join(root, 'home'), MOAT_CONFIG: join(root, 'config.yaml'), MOAT_SERVER_MAX: '8', ...serverEnv(root) };

// The image moat would run, so docker runs exactly the same thing.
const up = JSON.parse(execFileSync(process.execPath, [bin, 'up', '--task', 'warm', '--json'], { cwd: repo, env, encoding: 'utf8' }));
execFileSync(process.execPath, [bin, 'rm', '--force', 'warm'], { cwd: repo, env });
const image = up.image;
const uid = `${up.user.uid}:${up.user.gid}`;
const dockerArgs = [
  'run',
  '--rm',
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
  '--cpus',
  '2',
  '--pids-limit',
  '512',
  '--ulimit',
  'nofile=4096:4096',
  '--tmpfs',
  '/tmp:size=512m',
  '--tmpfs',
  '/home/agent:size=512m',
  '-v',
  `${repo}:/workspace`,
  '--label',
  'moat.task=bench',
  image,
  'true',
];

const remote = process.env.BENCH_REMOTE;
let remoteEnv;
let remoteDockerArgs;
if (remote) {
  const remoteRoot = join(root, 'remote');
  mkdirSync(remoteRoot);
  remoteEnv = { ...env, DOCKER_HOST: remote, MOAT_HOME: join(remoteRoot, 'home'), ...serverEnv(remoteRoot) };
  const made = JSON.parse(execFileSync(process.execPath, [bin, 'up', '--task', 'warm', '--json'], { cwd: repo, env: remoteEnv, encoding: 'utf8' }));
  execFileSync(process.execPath, [bin, 'rm', '--force', 'warm'], { cwd: repo, env: remoteEnv });
  const without = dockerArgs.filter((arg, i) => arg !== '-v' && dockerArgs[i - 1] !== '-v');
  remoteDockerArgs = ['-H', remote, ...without.map((arg) => (arg === image ? made.image : arg))];
}

// Under gVisor moat gives the host's pids cgroup room for runsc's threads and holds the user's figure
// inside (RLIMIT_NPROC): docker gets the same.
const gvisor = process.env.BENCH_GVISOR === '1' || process.env.BENCH_GVISOR === 'only';
const runcRows = process.env.BENCH_GVISOR !== 'only' && process.env.BENCH_PODMAN !== 'only';
const gvisorEnv = { ...env, MOAT_ISOLATION: 'gvisor' };
const gvisorDockerArgs = ['run', '--runtime', 'runsc', ...dockerArgs.slice(1).map((arg) => (arg === '512' ? String(512 * 12 + 64) : arg))].flatMap((arg) =>
  arg === 'nofile=4096:4096' ? [arg, '--ulimit', 'nproc=512:512'] : [arg],
);
// Podman: rootful as root, rootless as anyone else (the mode is read from Podman itself, not assumed).
const podman = process.env.BENCH_PODMAN === '1' || process.env.BENCH_PODMAN === 'only';
const podmanSocket =
  process.env.BENCH_PODMAN_SOCKET ?? (process.getuid() === 0 ? '/run/podman/podman.sock' : join(process.env.XDG_RUNTIME_DIR ?? '', 'podman', 'podman.sock'));
let podmanEnv;
let podmanArgs;
let podmanMode = '';
if (podman) {
  const podmanRoot = join(root, 'podman');
  mkdirSync(podmanRoot);
  const rootless = execFileSync('podman', ['info', '--format', '{{.Host.Security.Rootless}}'], { encoding: 'utf8' }).trim() === 'true';
  podmanMode = rootless ? 'rootless' : 'rootful';
  // Rootless Podman on cgroup v1 cannot hold cgroup limits: moat refuses unless the user's config accepts the gap.
  const config = join(podmanRoot, 'config.yaml');
  writeFileSync(config, rootless ? 'acceptUnenforcedLimits: [memory, cpus, pids]\n' : '');
  podmanEnv = {
    ...env,
    MOAT_ENGINE: 'podman',
    MOAT_ENGINE_SOCKET: podmanSocket,
    MOAT_CONFIG: config,
    MOAT_HOME: join(podmanRoot, 'home'),
    ...serverEnv(podmanRoot),
  };
  const made = JSON.parse(execFileSync(process.execPath, [bin, 'up', '--task', 'warm', '--json'], { cwd: repo, env: podmanEnv, encoding: 'utf8' }));
  execFileSync(process.execPath, [bin, 'rm', '--force', 'warm'], { cwd: repo, env: podmanEnv });
  podmanArgs = [
    'run',
    '--runtime',
    'runc',
    ...(rootless ? ['--userns', 'keep-id'] : []),
    ...dockerArgs.slice(1).map((arg) => (arg === image ? made.image : arg === uid ? `${made.user.uid}:${made.user.gid}` : arg)),
  ].flatMap((arg) => (arg === 'nofile=4096:4096' ? [arg, '--ulimit', `nproc=${hostNproc()}:${hostNproc()}`] : [arg]));
}
// Another build, beside this one: its own home and warm server, the same repository and engine.
const before = process.env.BENCH_BEFORE;
const beforeEnv = (base, dir) => {
  mkdirSync(join(root, dir), { recursive: true });
  return { ...base, MOAT_HOME: join(root, dir, 'home'), ...serverEnv(join(root, dir)) };
};
const BEFORE = 'BENCH_BEFORE (another build): moat run --rm -- true (warm server, pool)';
const PODMAN_BEFORE = () => `Podman ${podmanMode}: BENCH_BEFORE (another build): moat run --rm -- true (warm server, pool)`;
const PODMAN_MOAT = () => `Podman ${podmanMode}: moat run --rm -- true (warm server, pool)`;
const PODMAN_NO_POOL = () => `Podman ${podmanMode}: moat run --rm -- true, MOAT_POOL=off`;
const PODMAN_COLD = () => `Podman ${podmanMode}: moat run --rm -- true, MOAT_SERVER=off`;
const PODMAN_BARE = () => `Podman ${podmanMode}: podman run --rm (same flags and image)`;

const GVISOR_MOAT = 'gVisor: moat run --rm -- true (MOAT_ISOLATION=gvisor)';
const GVISOR_DOCKER = 'gVisor: docker run --rm --runtime runsc (same flags and image)';
const GVISOR_NO_POOL = 'gVisor: moat run --rm -- true, MOAT_POOL=off (nothing made ahead)';

const MOAT = 'moat run --rm -- true (task repo and branch created, run, synced, removed)';
const NO_POOL = 'moat run --rm -- true, MOAT_POOL=off (warm server, nothing made ahead)';
const COLD = 'moat run --rm -- true, MOAT_SERVER=off (own Node process, nothing made ahead)';
const DOCKER = 'docker run --rm (same flags and image)';
const scenarios = {
  ...(runcRows
    ? {
        [MOAT]: () => timed(process.execPath, [bin, 'run', '--rm', '--', 'true'], { cwd: repo, env }),
        [NO_POOL]: () => timed(process.execPath, [bin, 'run', '--rm', '--', 'true'], { cwd: repo, env: { ...env, MOAT_POOL: 'off' } }),
        [COLD]: () => timed(process.execPath, [bin, 'run', '--rm', '--', 'true'], { cwd: repo, env: { ...env, MOAT_SERVER: 'off' } }),
        [DOCKER]: () => timed('docker', dockerArgs),
        ...(before
          ? {
              [BEFORE]: (
                (e) => () =>
                  timed(process.execPath, [before, 'run', '--rm', '--', 'true'], { cwd: repo, env: e })
              )(beforeEnv(env, 'before')),
            }
          : {}),
      }
    : {}),
  ...(remote
    ? {
        [`remote engine (${remote}): moat run --rm -- true`]: () => timed(process.execPath, [bin, 'run', '--rm', '--', 'true'], { cwd: repo, env: remoteEnv }),
        [`remote engine (${remote}): docker run --rm (same flags and image)`]: () => timed('docker', remoteDockerArgs),
      }
    : {}),
  ...(podman
    ? {
        [PODMAN_MOAT()]: () => timed(process.execPath, [bin, 'run', '--rm', '--', 'true'], { cwd: repo, env: podmanEnv }),
        [PODMAN_NO_POOL()]: () => timed(process.execPath, [bin, 'run', '--rm', '--', 'true'], { cwd: repo, env: { ...podmanEnv, MOAT_POOL: 'off' } }),
        [PODMAN_COLD()]: () => timed(process.execPath, [bin, 'run', '--rm', '--', 'true'], { cwd: repo, env: { ...podmanEnv, MOAT_SERVER: 'off' } }),
        [PODMAN_BARE()]: () => timed('podman', podmanArgs),
        ...(before
          ? {
              [PODMAN_BEFORE()]: (
                (e) => () =>
                  timed(process.execPath, [before, 'run', '--rm', '--', 'true'], { cwd: repo, env: e })
              )(beforeEnv(podmanEnv, 'podman-before')),
            }
          : {}),
      }
    : {}),
  ...(gvisor
    ? {
        [GVISOR_MOAT]: () => timed(process.execPath, [bin, 'run', '--rm', '--', 'true'], { cwd: repo, env: gvisorEnv }),
        [GVISOR_DOCKER]: () => timed('docker', gvisorDockerArgs),
        [GVISOR_NO_POOL]: () => timed(process.execPath, [bin, 'run', '--rm', '--', 'true'], { cwd: repo, env: { ...gvisorEnv, MOAT_POOL: 'off' } }),
      }
    : {}),
};
const samples = Object.fromEntries(Object.keys(scenarios).map((k) => [k, []]));
for (let i = 0; i < rounds; i += 1) {
  for (const [name, run] of Object.entries(scenarios)) {
    samples[name].push(run(i));
    settle();
  }
}
stopServers(root);
if (remote) stopServers(join(root, 'remote'));
if (podman) stopServers(join(root, 'podman'));
if (before) for (const dir of ['before', 'podman-before']) stopServers(join(root, dir));
rmSync(root, { recursive: true, force: true });

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const rows = Object.entries(samples).map(([name, xs]) => ({ name, median: median(xs), p10: pct(xs, 10), p90: pct(xs, 90) }));
const row = (name) => rows.find((r) => r.name === name);
const [moatRow, noPoolRow, coldRow, dockerRow] = [row(MOAT), row(NO_POOL), row(COLD), row(DOCKER)];
const remoteMoatRow = rows.find((r) => r.name.startsWith('remote engine') && r.name.includes('moat run'));
const remoteDockerRow = rows.find((r) => r.name.startsWith('remote engine') && r.name.includes('docker run'));
const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'cpu'}), ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, node ${process.version}, ${execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8' }).trim()}`;
console.log(`machine: ${machine}; ${rounds} rounds, alternating`);
console.log('| scenario | median ms | p10 ms | p90 ms |\n|---|---|---|---|');
for (const row of rows) console.log(`| ${row.name} | ${row.median.toFixed(0)} | ${row.p10.toFixed(0)} | ${row.p90.toFixed(0)} |`);
// BENCH_SAMPLES=1: each row's rounds in order (a claim that found no spare stands out from the rest).
if (process.env.BENCH_SAMPLES === '1') for (const [name, xs] of Object.entries(samples)) console.log(`${name}: ${xs.map((x) => x.toFixed(0)).join(' ')}`);
if (runcRows)
  console.log(
    `ratio moat / docker run (median): ${(moatRow.median / dockerRow.median).toFixed(2)} (goal <= 1.2); with MOAT_POOL=off ${(noPoolRow.median / dockerRow.median).toFixed(2)}; with MOAT_SERVER=off ${(coldRow.median / dockerRow.median).toFixed(2)}`,
  );
if (before && runcRows) console.log(`BENCH_BEFORE: ratio before / docker run (median): ${(row(BEFORE).median / dockerRow.median).toFixed(2)}`);
if (remote) console.log(`remote engine: ratio moat / docker run (median): ${(remoteMoatRow.median / remoteDockerRow.median).toFixed(2)}`);
const gvisorRatio = gvisor ? row(GVISOR_MOAT).median / row(GVISOR_DOCKER).median : undefined;
const gvisorNoPoolRatio = gvisor ? row(GVISOR_NO_POOL).median / row(GVISOR_DOCKER).median : undefined;
if (gvisor)
  console.log(
    `gVisor: ratio moat / docker run --runtime runsc (median): ${gvisorRatio.toFixed(2)} (goal <= 1.3); with MOAT_POOL=off ${gvisorNoPoolRatio.toFixed(2)}`,
  );
const podmanRatios = podman
  ? Object.fromEntries(
      [
        ['ratio', PODMAN_MOAT()],
        ['noPoolRatio', PODMAN_NO_POOL()],
        ['coldRatio', PODMAN_COLD()],
      ].map(([key, name]) => [key, row(name).median / row(PODMAN_BARE()).median]),
    )
  : undefined;
if (podman)
  console.log(
    `Podman ${podmanMode}: ratio moat / podman run (median): ${podmanRatios.ratio.toFixed(2)} (goal <= 1.3); with MOAT_POOL=off ${podmanRatios.noPoolRatio.toFixed(2)}; with MOAT_SERVER=off ${podmanRatios.coldRatio.toFixed(2)}`,
  );
if (before && podman)
  console.log(
    `Podman ${podmanMode}: BENCH_BEFORE: ratio before / podman run (median): ${(row(PODMAN_BEFORE()).median / row(PODMAN_BARE()).median).toFixed(2)}`,
  );
// Run as another user (rootless Podman as that user) the checkout may not be theirs to write: the figures are printed above.
try {
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(
    join(import.meta.dirname, 'results', 'latest.json'),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        machine,
        rounds,
        rows,
        ...(runcRows
          ? { ratio: moatRow.median / dockerRow.median, noPoolRatio: noPoolRow.median / dockerRow.median, coldRatio: coldRow.median / dockerRow.median }
          : {}),
        ...(remote ? { remoteRatio: remoteMoatRow.median / remoteDockerRow.median } : {}),
        ...(gvisor ? { gvisorRatio, gvisorNoPoolRatio } : {}),
        ...(podman ? { podman: { mode: podmanMode, ...podmanRatios } } : {}),
      },
      null,
      2,
    ),
  );
} catch (error) {
  if (error.code !== 'EACCES') throw error;
  console.error(`bench: results not written (${error.message}): the figures above are the run's`);
}

/** RLIMIT_NPROC as moat gives it to Podman (podman-engine.ts hostNproc): this process's soft limit, at most 32768. */
function hostNproc() {
  const soft = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max processes'))
    ?.split(/\s+/)[2];
  return soft && /^\d+$/.test(soft) ? Math.min(Number(soft), 32768) : 32768;
}
