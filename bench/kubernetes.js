// moat on Kubernetes (the one-node cluster of scripts/cluster.sh; `npm run cluster` first):
// 1. `moat run -- true` against a bare pod of the same spec created, waited for, exec'd and deleted
//    by kubectl, alternating in one run (goal <= 1.3x);
// 2. with the warm server's pool: the time from `moat run -- echo` to its first byte of output,
//    over BENCH_CLAIMS runs (default 50; goal p99 <= 500 ms) BENCH_CLAIM_GAP seconds apart (default
//    3), the pool sized by BENCH_POOL (MOAT_POOL=N, default 3: a pod takes ~5-6 s to make on this
//    machine, so one made ahead per shape cannot keep up with a claim every 3 s). Whether a spare
//    was ready when each claim began is read from the task store, and claims that found none (they
//    waited for one being made: a pool-size result) are reported apart;
// BENCH_K8S_AHEAD_ON=1 adds a row for MOAT_K8S_EXEC_AHEAD=on (an exec opened ahead into every pod; by
//    default only into the pool's spares, so part 2's claims use one), alternating too;
// BENCH_K8S_BEFORE=/path/to/other/bin/moat.js adds a row for another build's `moat run -- true`
//    MOAT_POOL=off (the change's before, e.g. main's checkout, built), alternating in the same rounds;
// 3. 20 tasks at once (`moat up` x 20 in parallel) against 20 bare pods applied at once, each
//    until all run; nothing may be lost.
// Every moat command runs as the user types it: bin/moat (the native client where it was built,
// which serves `run` on the warm server without a Node start); BENCH_K8S_NODE_CLIENT=1 runs
// `node bin/moat.js` instead (the Node client, as before 2 December). BENCH_K8S_TRACE=1 traces the
// claims (bench/kubernetes-trace.cjs in the warm server and any Node client) and prints where each
// one's time went, from the spawn to its first output.
// Not a test: nothing here asserts a time. Everything it makes is in a namespace of its own, removed at the end.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { median, pct } from './figures.js';
import { serverEnv, settle, stopServers } from './warm-server.js';
import { timed } from './timed.js';
import { benchRepo } from './repo.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 7);
const claims = Number(process.env.BENCH_CLAIMS ?? 50);
const parallel = Number(process.env.BENCH_PARALLEL ?? 20);
const kubeconfig = process.env.MOAT_K8S_KUBECONFIG ?? '/var/lib/moat-k8s/admin.kubeconfig';
const kubectlBin = existsSync('/run/moat-k8s/bin') ? `${readFileSync('/run/moat-k8s/bin', 'utf8').trim()}/kubectl` : 'kubectl';
const namespace = `moat-bench-${randomBytes(3).toString('hex')}`;
const kubectl = (args, options = {}) => execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, '-n', namespace, ...args], { encoding: 'utf8', ...options });
const bin = join(import.meta.dirname, '..', 'bin', 'moat.js');
// The command a user types (its launcher picks the native client or Node), or Node's client.
const moatCommand = (script) => (process.env.BENCH_K8S_NODE_CLIENT ? [process.execPath, script] : [join(dirname(script), 'moat')]);
const [moatExe, ...moatPre] = moatCommand(bin);
const traceLog = process.env.BENCH_K8S_TRACE ? join(tmpdir(), `moat-k8s-trace-${process.pid}.jsonl`) : undefined;
const root = mkdtempSync(join(tmpdir(), 'moat-bench-k8s-'));
const repo = benchRepo(root);
writeFileSync(join(root, 'config.yaml'), 'acceptUnenforcedLimits: [pids]\n');
const env = {
  ...process.env,
  MOAT_HOME: join(root, 'home'),
  MOAT_CONFIG: join(root, 'config.yaml'),
  MOAT_ENGINE: 'kubernetes',
  KUBECONFIG: kubeconfig,
  MOAT_K8S_NAMESPACE: namespace,
  MOAT_K8S_IMAGE_ENGINE: 'unix:///run/moat-k8s/docker.sock',
  ...serverEnv(root),
};
const poolSize = process.env.BENCH_POOL ?? '3';
const beforeBin = process.env.BENCH_K8S_BEFORE;
const moat = (args) => execFileSync(process.execPath, [bin, ...args], { cwd: repo, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, 'create', 'namespace', namespace], { stdio: 'ignore' });
try {
  for (let i = 0; i < 100 && spawnSync(kubectlBin, ['--kubeconfig', kubeconfig, '-n', namespace, 'get', 'serviceaccount', 'default']).status !== 0; i += 1)
    spawnSync('sleep', ['0.2']);
  // The pod moat would make, so kubectl runs exactly the same thing.
  const up = JSON.parse(moat(['up', '--task', 'warm', '--json']));
  const spec = JSON.parse(kubectl(['get', 'pod', up.containerId, '-o', 'json']));
  moat(['rm', '--force', 'warm']);
  const barePod = (name) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { 'moat.bench': 'bare' } },
    spec: { ...spec.spec, nodeName: undefined, volumes: spec.spec.volumes.filter((v) => !v.projected) },
  });
  const bare = (name) => {
    kubectl(['apply', '-f', '-'], { input: JSON.stringify(barePod(name)) });
    kubectl(['wait', '--for=condition=Ready', `pod/${name}`, '--timeout=120s']);
    kubectl(['exec', name, '-c', 'sandbox', '--', 'true']);
    // Removed at once, as moat removes its pods (gracePeriodSeconds 0), and waited for until gone.
    kubectl(['delete', 'pod', name, '--grace-period=0', '--force', '--wait=true'], { stdio: ['pipe', 'pipe', 'ignore'] });
  };

  // 1. moat run -- true against a bare pod. Each round runs the scenarios in a rotated order, and
  // each starts on a quiet cluster: after the pooled run, its server makes the next pod ahead (a
  // whole pod start, seconds of the node's CPU), so the next scenario waits until that one is
  // ready; and a pod moat removed without waiting is let go first (its containers are stopped by
  // the kubelet after the API server dropped it).
  const scenarios = [
    ['moat run -- true', () => timed(moatExe, [...moatPre, 'run', '--', 'true'], { cwd: repo, env })],
    [
      'bare pod (kubectl apply, wait, exec, delete)',
      (i) => {
        const start = process.hrtime.bigint();
        bare(`bare-${i}`);
        return Number(process.hrtime.bigint() - start) / 1e6;
      },
    ],
    ['moat run -- true, MOAT_POOL=off', () => timed(moatExe, [...moatPre, 'run', '--', 'true'], { cwd: repo, env: { ...env, MOAT_POOL: 'off' } })],
    ...(process.env.BENCH_K8S_AHEAD_ON
      ? [
          [
            'moat run -- true, MOAT_POOL=off, MOAT_K8S_EXEC_AHEAD=on',
            () => timed(moatExe, [...moatPre, 'run', '--', 'true'], { cwd: repo, env: { ...env, MOAT_POOL: 'off', MOAT_K8S_EXEC_AHEAD: 'on' } }),
          ],
        ]
      : []),
    ...(beforeBin
      ? [
          [
            'BENCH_K8S_BEFORE: moat run -- true, MOAT_POOL=off',
            () => {
              const [exe, ...pre] = moatCommand(beforeBin);
              return timed(exe, [...pre, 'run', '--', 'true'], { cwd: repo, env: { ...env, MOAT_POOL: 'off' } });
            },
          ],
        ]
      : []),
  ];
  const samples = Object.fromEntries(scenarios.map(([name]) => [name, []]));
  // Every pod of the namespace is a spare ready to take: none being made, none on its way out.
  const quiet = () => {
    for (let waited = 0; waited < 120 && kubectl(['get', 'pods', '-o', 'name']).split('\n').filter(Boolean).length > readySpares(); waited += 1)
      spawnSync('sleep', ['0.5']);
    settle();
  };
  for (let i = 0; i < rounds; i += 1) {
    for (let j = 0; j < scenarios.length; j += 1) {
      const [name, run] = scenarios[(i + j) % scenarios.length];
      quiet();
      samples[name].push(run(i));
    }
  }
  const rows = Object.entries(samples).map(([name, xs]) => ({ name, median: median(xs), p10: pct(xs, 10), p90: pct(xs, 90) }));
  // BENCH_ROUNDS=0: the claims alone.
  if (rounds > 0) console.log(`kubernetes: ${rounds} rounds, alternating`);
  if (rounds > 0) console.log('| scenario | median ms | p10 ms | p90 ms | x bare pod |\n|---|---|---|---|---|');
  for (const row of rounds > 0 ? rows : [])
    console.log(`| ${row.name} | ${row.median.toFixed(0)} | ${row.p10.toFixed(0)} | ${row.p90.toFixed(0)} | ${(row.median / rows[1].median).toFixed(2)} |`);

  // 2. Claims from the warm server's pool: spawn to the first byte of the command's output.
  // Part 1's servers go first, with the spares they made: only this pool's spares are counted.
  stopServers(root);
  const claimEnv = {
    ...env,
    MOAT_POOL: poolSize,
    ...(traceLog ? { MOAT_TRACE_LOG: traceLog, NODE_OPTIONS: `--require ${join(import.meta.dirname, 'kubernetes-trace.cjs')}` } : {}),
  };
  const claimTimes = [];
  const firstByte = () =>
    new Promise((resolve, reject) => {
      const start = process.hrtime.bigint();
      const spawnedAt = performance.timeOrigin + performance.now();
      let at;
      const child = spawn(moatExe, [...moatPre, 'run', '--', 'echo', 'claimed'], { cwd: repo, env: claimEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.once('data', () => {
        at = Number(process.hrtime.bigint() - start) / 1e6;
        claimTimes.push({ spawnedAt, at });
      });
      let err = '';
      child.stderr.on('data', (c) => (err += c));
      child.on('exit', (code) => (code === 0 && at !== undefined ? resolve(at) : reject(new Error(`moat run failed (${code}): ${err}`))));
    });
  const claimed = [];
  const withSpare = [];
  const withoutSpare = [];
  const gap = process.env.BENCH_CLAIM_GAP ?? '3';
  if (claims > 0) {
    // The server starts, and fills its pool, before the first timed claim (untimed, as a user's
    // first commands of the day would). The first command runs beside the server it starts, not
    // on it, so the server hears of the request's shape only from the next one: untimed commands
    // until spares are being made, then the wait until the pool is full.
    for (let i = 0; i < 3 && readySpares() === 0; i += 1) {
      await firstByte();
      for (let waited = 0; waited < 40 && readySpares() === 0; waited += 1) spawnSync('sleep', ['0.5']);
    }
    for (let i = 0; i < 120 && readySpares() < Number(poolSize); i += 1) spawnSync('sleep', ['0.5']);
    if (readySpares() < Number(poolSize)) console.log(`claims: the pool holds ${readySpares()} of ${poolSize} spares after the warm-up`);
    claimTimes.length = 0;
  }
  for (let i = 0; i < claims; i += 1) {
    const ready = readySpares();
    const ms = await firstByte();
    claimed.push(ms);
    (ready > 0 ? withSpare : withoutSpare).push(ms);
    // The pool makes the next ones ahead: give it the time a person between two commands would.
    spawnSync('sleep', [gap]);
  }
  const figures = (xs) =>
    xs.length > 0
      ? `p50 ${median(xs).toFixed(0)} ms, p90 ${pct(xs, 90).toFixed(0)} ms, p99 ${pct(xs, 99).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`
      : 'none';
  if (claims > 0) {
    console.log(`\nclaims: ${claims}, ${gap} s apart, pool MOAT_POOL=${poolSize} per shape; first output after:`);
    console.log(`  all ${claims}: ${figures(claimed)}`);
    console.log(`  ${withSpare.length} with a spare ready as the claim began: ${figures(withSpare)}`);
    console.log(`  ${withoutSpare.length} with none ready (waited for one being made: the pool's size, not the claim): ${figures(withoutSpare)}`);
    if (traceLog) printTrace(traceLog, claimTimes);
  }

  // 3. Many at once (BENCH_PARALLEL=0 leaves it out).
  if (parallel > 0) await many(barePod);
} finally {
  stopServers(root);
  spawnSync(kubectlBin, ['--kubeconfig', kubeconfig, 'delete', 'namespace', namespace, '--wait=true'], { stdio: 'ignore' });
  rmSync(root, { recursive: true, force: true });
  if (traceLog) rmSync(traceLog, { force: true });
}

/**
 * Each claim's time line from the trace (bench/kubernetes-trace.cjs): from the spawn, when the
 * server accepted it, then every event of the server's until the first output (its API requests,
 * git, event-loop stalls and GC pauses; those of the spare being made meanwhile among them), and a
 * summary of the parts over all claims.
 */
function printTrace(file, times) {
  const events = readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .sort((a, b) => a.t - b.t);
  const parts = { connect: [], toFirstApi: [], stalls: [], fromLastApi: [] };
  console.log('\nclaims traced (ms from the spawn; server events until the first output):');
  times.forEach(({ spawnedAt, at }, i) => {
    const end = spawnedAt + at;
    const accept = events.find((e) => e.role === 'server' && e.event === 'accept' && e.t >= spawnedAt && e.t <= end);
    const during = events.filter((e) => e.role === 'server' && e.t >= (accept?.t ?? spawnedAt) && e.t <= end && e.event !== 'accept');
    const rel = (t) => (t - spawnedAt).toFixed(0);
    const said = during.map((e) => `+${rel(e.t)} ${e.event}${e.what ? ` ${e.what}` : ''}${e.ms ? ` ${e.ms}ms` : ''}`);
    console.log(`  #${i + 1} ${at.toFixed(0)} ms: accepted +${accept ? rel(accept.t) : '?'}; ${said.join('; ')}`);
    if (!accept) return;
    parts.connect.push(accept.t - spawnedAt);
    const api = during.filter((e) => e.event === 'http');
    if (api.length > 0) parts.toFirstApi.push(api[0].t - accept.t);
    const answers = during.filter((e) => e.event === 'http-response' || e.event === 'http-upgrade');
    if (answers.length > 0) parts.fromLastApi.push(end - answers.at(-1).t);
    parts.stalls.push(during.filter((e) => e.event === 'stall' || e.event === 'gc').reduce((sum, e) => sum + e.ms, 0));
  });
  for (const [name, xs] of Object.entries(parts))
    if (xs.length > 0) console.log(`  ${name}: p50 ${median(xs).toFixed(0)} ms, p90 ${pct(xs, 90).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`);
}

/** Spares made ahead and ready to take: pooled task records with their pod, not yet claimed. */
function readySpares() {
  const repos = join(env.MOAT_HOME, 'repos');
  if (!existsSync(repos)) return 0;
  let ready = 0;
  for (const key of readdirSync(repos)) {
    const tasks = join(repos, key, 'tasks');
    if (!existsSync(tasks)) continue;
    for (const name of readdirSync(tasks)) {
      try {
        const record = JSON.parse(readFileSync(join(tasks, name, 'task.json'), 'utf8'));
        if (record.state === 'pooled' && record.containerId && !existsSync(join(tasks, name, 'spare-claimed'))) ready += 1;
      } catch {
        // Being written or removed: not ready.
      }
    }
  }
  return ready;
}

async function many(barePod) {
  const start = process.hrtime.bigint();
  const ups = await Promise.all(
    Array.from(
      { length: parallel },
      (_, i) =>
        new Promise((resolve) => {
          const child = spawn(process.execPath, [bin, 'up', '--task', `many-${i}`], { cwd: repo, env, stdio: ['ignore', 'ignore', 'pipe'] });
          let err = '';
          child.stderr.on('data', (c) => (err += c));
          child.on('exit', (code) => resolve({ code, err }));
        }),
    ),
  );
  const moatMany = Number(process.hrtime.bigint() - start) / 1e6;
  const running = JSON.parse(moat(['ls', '--json'])).filter((t) => t.name.startsWith('many-') && t.state === 'running').length;
  const failed = ups.filter((u) => u.code !== 0);
  for (let i = 0; i < parallel; i += 1) spawnSync(process.execPath, [bin, 'rm', '--force', `many-${i}`], { cwd: repo, env });
  const bareStart = process.hrtime.bigint();
  kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: Array.from({ length: parallel }, (_, i) => barePod(`many-${i}`)) }),
  });
  kubectl(['wait', '--for=condition=Ready', 'pod', '-l', 'moat.bench=bare', '--timeout=300s']);
  const bareMany = Number(process.hrtime.bigint() - bareStart) / 1e6;
  kubectl(['delete', 'pod', '-l', 'moat.bench=bare', '--grace-period=0', '--force', '--wait=true'], { stdio: ['pipe', 'pipe', 'ignore'] });
  console.log(
    `\n${parallel} at once: moat up ${moatMany.toFixed(0)} ms (${running} running, ${failed.length} failed${failed[0] ? `: ${failed[0].err.trim().split('\n').pop()}` : ''}); bare pods ${bareMany.toFixed(0)} ms; ${(moatMany / bareMany).toFixed(2)}x`,
  );
}
