// Where `moat run -- true` (MOAT_POOL=off, no warm server) spends its time on the cluster of
// scripts/cluster.sh: every engine call and every API request timed, from the run's start, in the
// library (dist/) as the CLI runs it. Then an exec in a running task (one read of the pod at most,
// then the exec), and `moat run -- echo` claiming a task made ahead (the warm server's pool, here
// in-process: no CLI start, no socket hop), each step from the claim's start and the first output.
// Not a test: it prints, it asserts nothing.
// `npm run build && node bench/kubernetes-profile.js` (BENCH_ROUNDS, default 3).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { CoreV1Api, NetworkingV1Api } from '@kubernetes/client-node';
import { Moat } from '../dist/index.js';
import { KubernetesEngine } from '../dist/engine/kubernetes-engine.js';
import { TaskPool } from '../dist/service/task-pool.js';
import { benchRepo } from './repo.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const kubeconfig = process.env.MOAT_K8S_KUBECONFIG ?? '/var/lib/moat-k8s/admin.kubeconfig';
const kubectlBin = existsSync('/run/moat-k8s/bin') ? `${readFileSync('/run/moat-k8s/bin', 'utf8').trim()}/kubectl` : 'kubectl';
const namespace = `moat-prof-${randomBytes(3).toString('hex')}`;

let t0 = performance.now();
let steps = [];
const wrap = (proto, name, label) => {
  const original = proto[name];
  if (typeof original !== 'function' || name === 'constructor') return;
  proto[name] = function (...args) {
    const start = performance.now();
    const done = () =>
      steps.push({
        label: `${label}.${name}${
          name === 'exec'
            ? ` ${String(args[1]?.cmd?.[2] ?? args[1]?.cmd?.[0] ?? '')
                .slice(0, 40)
                .replace(/\s+/g, ' ')}`
            : ''
        }`,
        start: start - t0,
        ms: performance.now() - start,
      });
    const result = original.apply(this, args);
    if (result && typeof result.then === 'function') result.then(done, done);
    else done();
    return result;
  };
};
for (const name of Object.getOwnPropertyNames(KubernetesEngine.prototype)) wrap(KubernetesEngine.prototype, name, 'engine');
for (const api of [CoreV1Api, NetworkingV1Api])
  for (const name of Object.getOwnPropertyNames(api.prototype)) if (/Namespaced|^list|^read/.test(name)) wrap(api.prototype, name, '  api');

const root = mkdtempSync(join(tmpdir(), 'moat-prof-k8s-'));
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
  MOAT_SERVER: 'off',
  MOAT_POOL: 'off',
};
const print = (title, total) => {
  console.log(`\n${title}: ${total.toFixed(0)} ms`);
  for (const s of steps.sort((a, b) => a.start - b.start)) console.log(`  +${s.start.toFixed(0).padStart(5)} ${s.ms.toFixed(0).padStart(5)} ms  ${s.label}`);
};
/** Runs `fn` with the clock and the steps reset, and prints them with the time of its first output. */
const timedFirstOutput = async (title, fn) => {
  steps = [];
  t0 = performance.now();
  let first;
  const out = new PassThrough();
  out.once('data', () => (first = performance.now() - t0));
  out.resume();
  await fn({ stdout: out, stderr: new PassThrough().resume() });
  const total = performance.now() - t0;
  print(`${title}; first output at ${first?.toFixed(0)} ms`, total);
  return { first, total };
};
const sink = () => ({ stdout: new PassThrough().resume(), stderr: new PassThrough().resume() });

execFileSync(kubectlBin, ['--kubeconfig', kubeconfig, 'create', 'namespace', namespace], { stdio: 'ignore' });
try {
  for (let i = 0; i < 100 && spawnSync(kubectlBin, ['--kubeconfig', kubeconfig, '-n', namespace, 'get', 'serviceaccount', 'default']).status !== 0; i += 1)
    spawnSync('sleep', ['0.2']);
  // One untimed run first: images built, the NetworkPolicy made, as a user's second run finds them.
  await new Moat({ cwd: repo, env }).run(['true'], sink());
  for (let i = 0; i < rounds; i += 1) {
    const moat = new Moat({ cwd: repo, env });
    steps = [];
    t0 = performance.now();
    await moat.run(['true'], sink());
    print(`moat run -- true (MOAT_POOL=off), round ${i + 1}`, performance.now() - t0);
  }
  const moat = new Moat({ cwd: repo, env });
  await moat.up({ task: 'claimed' });
  for (let i = 0; i < rounds; i += 1) {
    const fresh = new Moat({ cwd: repo, env });
    await timedFirstOutput(`exec in a running task (a claim's path), round ${i + 1}`, (io) => fresh.exec('claimed', ['echo', 'hi'], io, { sync: false }));
  }
  await moat.rm('claimed', { force: true });

  // A claim: the pool holds one task made ahead (made untimed, as the warm server makes it while
  // the user reads; the clock starts once it is ready), then `run -- echo` takes it. Three ways,
  // alternating each round, each with a pool of its own (the spare's maker's setting decides
  // whether an exec waits in it): the default (an exec opened ahead into the spare, the status
  // in-band), the exec's own status awaited instead (MOAT_K8S_STATUS_INBAND=off), and no exec
  // opened ahead (MOAT_K8S_EXEC_AHEAD=off).
  const variants = [
    ['default (exec ahead into the spare, status in-band)', {}],
    ['MOAT_K8S_STATUS_INBAND=off', { MOAT_K8S_STATUS_INBAND: 'off' }],
    ['MOAT_K8S_EXEC_AHEAD=off', { MOAT_K8S_EXEC_AHEAD: 'off' }],
  ].map(([name, extra]) => ({ name, env: { ...env, ...extra, MOAT_POOL: '1' }, pool: new TaskPool(4, 1), first: [], exec: [], total: [] }));
  for (const variant of variants) await new Moat({ cwd: repo, env: variant.env, pool: variant.pool }).run(['true'], sink());
  for (let i = 0; i < rounds; i += 1) {
    for (const variant of variants) {
      const { pool } = variant;
      pool.makeWanted();
      for (let waited = 0; pool.readyCount() === 0 && waited < 120_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const { first, total } = await timedFirstOutput(`run -- echo claiming a task made ahead, ${variant.name}, round ${i + 1}`, (io) =>
        new Moat({ cwd: repo, env: variant.env, pool }).run(['echo', 'claimed'], io),
      );
      variant.first.push(first);
      variant.total.push(total);
      // The command's exec: the one under way when its output came.
      variant.exec.push(steps.find((step) => step.label.startsWith('engine.exec') && step.start <= first && step.start + step.ms >= first)?.ms ?? NaN);
    }
  }
  console.log('\nclaims of a spare, in-process (ms; each round in order):');
  console.log('| | first output | the command exec, whole | the run, whole |\n|---|---|---|---|');
  for (const v of variants)
    console.log(
      `| ${v.name} | ${v.first.map((x) => x.toFixed(0)).join(', ')} | ${v.exec.map((x) => x.toFixed(0)).join(', ')} | ${v.total.map((x) => x.toFixed(0)).join(', ')} |`,
    );
  await Promise.all(variants.map((v) => v.pool.close()));
} finally {
  spawnSync(kubectlBin, ['--kubeconfig', kubeconfig, 'delete', 'namespace', namespace, '--wait=true'], { stdio: 'ignore' });
  rmSync(root, { recursive: true, force: true });
}
