// Pooled `run --rm -- true` claims in-process on Podman (no CLI start, no socket hop), with the exec
// opened ahead into the spare (MOAT_PODMAN_EXEC_AHEAD=spares) and without (off), alternating; the
// command's engine exec (the claim's one exec: the command and its snapshot, which runs in the
// foreground here: no warm server to defer it to) timed alone.
// `MOAT_ENGINE=podman MOAT_ENGINE_SOCKET=/run/podman/podman.sock node bench/exec-ahead-profile.js [dist folder]`;
// BENCH_ROUNDS claims of each (default 6). Each claim waits for its spare to be ready (and 1.5 s more,
// so the spare's own making is not on the claim's path). Not a test: nothing asserts a time.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import { benchRepo } from './repo.js';

const dist = resolve(process.argv[2] ?? join(import.meta.dirname, '..', 'dist'));
const rounds = Number(process.env.BENCH_ROUNDS ?? 6);
const { Moat } = await import(join(dist, 'index.js'));
const { TaskPool } = await import(join(dist, 'service/task-pool.js'));
const { PodmanEngine } = await import(join(dist, 'engine/podman-engine.js'));

// The engine's exec, timed where it is called (the claim's command; a Ctrl-C forwarder never runs here).
let execs = [];
const exec = PodmanEngine.prototype.exec;
PodmanEngine.prototype.exec = async function (...args) {
  const start = performance.now();
  try {
    return await exec.apply(this, args);
  } finally {
    execs.push(performance.now() - start);
  }
};

const roots = [];
const setups = {};
for (const mode of ['spares', 'off']) {
  const root = mkdtempSync(join(tmpdir(), `moat-exec-ahead-${mode}-`));
  roots.push(root);
  const repo = benchRepo(root);
  const env = { ...process.env, MOAT_HOME: join(root, 'home'), MOAT_CONFIG: join(root, 'config.yaml'), MOAT_POOL: '1', MOAT_PODMAN_EXEC_AHEAD: mode };
  const pool = new TaskPool(4, 1);
  setups[mode] = { pool, moat: () => new Moat({ cwd: repo, env, pool }), runs: [], execs: [] };
}
const io = () => ({ stdout: new PassThrough().resume(), stderr: new PassThrough().resume() });
// A first request of each: its own task; the pool learns what to make ahead.
for (const setup of Object.values(setups)) await setup.moat().run(['true'], io(), { rm: true });
for (let round = 0; round < rounds; round += 1) {
  for (const [mode, setup] of Object.entries(setups)) {
    setup.pool.makeWanted();
    for (let waited = 0; setup.pool.readyCount() === 0 && waited < 60_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1500));
    execs = [];
    const start = performance.now();
    await setup.moat().run(['true'], io(), { rm: true });
    setup.runs.push(performance.now() - start);
    setup.execs.push(execs[0] ?? NaN);
    console.log(`${mode}: run ${setup.runs.at(-1).toFixed(0)} ms, its exec ${setup.execs.at(-1).toFixed(0)} ms`);
  }
}
for (const { pool } of Object.values(setups)) await pool.close();
for (const root of roots) rmSync(root, { recursive: true, force: true });
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
console.log('| MOAT_PODMAN_EXEC_AHEAD | run, median ms | its exec, median ms |\n|---|---|---|');
for (const [mode, setup] of Object.entries(setups)) console.log(`| ${mode} | ${median(setup.runs).toFixed(0)} | ${median(setup.execs).toFixed(0)} |`);
