// A claim from the warm server's pool, in-process (no CLI start, no socket hop): how long `up`
// takes when a spare is ready, and what each step of planning the request costs on its own (each
// timed alone after the claims, on the same context kind the warm server gives a command).
// `node bench/claim-profile.js [dist folder]` (default: this checkout's dist/; another build's
// to compare, e.g. /tmp/before/dist). BENCH_ROUNDS claims (default 15). The engine is the one
// moat finds (MOAT_ENGINE/MOAT_ENGINE_SOCKET as for moat itself); BENCH_ENGINE=memory gives moat the
// in-memory engine of the unit tests instead (no engine time at all: what is left is moat's own git,
// config and template work; tasks are then left in place, not removed, and go with the folder).
// Not a test: nothing asserts a time.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { benchRepo } from './repo.js';

const dist = resolve(process.argv[2] ?? join(import.meta.dirname, '..', 'dist'));
const rounds = Number(process.env.BENCH_ROUNDS ?? 15);
const root = mkdtempSync(join(tmpdir(), 'moat-claim-'));
const repo = benchRepo(root);
const env = { ...process.env, MOAT_HOME: join(root, 'home'), MOAT_CONFIG: join(root, 'config.yaml') };

const { MoatContext } = await import(join(dist, 'service/context.js'));
const { up } = await import(join(dist, 'service/up.js'));
const { remove } = await import(join(dist, 'service/lifecycle.js'));
const { TaskPool } = await import(join(dist, 'service/task-pool.js'));
const { RepositoryCache } = await import(join(dist, 'workspace/user-repo.js'));
const { checkLimitEnforcement } = await import(join(dist, 'service/limit-check.js'));
const { planDisk } = await import(join(dist, 'service/disk-plan.js'));
const { chooseTaskTemplate } = await import(join(dist, 'service/repo-templates.js'));
const { ensureTemplateImage } = await import(join(dist, 'image/template-image.js'));
const processCaches = await import(join(dist, 'service/process-caches.js')).catch(() => undefined);

// What the warm server hands every command: one pool, one repository cache (and, where the build
// has them, its per-process caches).
const pool = new TaskPool(4, 1);
const repos = new RepositoryCache();
const caches = processCaches ? new processCaches.ProcessCaches() : undefined;
const memory = process.env.BENCH_ENGINE === 'memory';
const memoryEngine = memory
  ? new (await import(join(dist, 'engine/memory-engine.js'))).MemoryEngine({ images: ['moat-base:bookworm'], capabilities: { hostMounts: true } })
  : undefined;
const context = () =>
  new MoatContext({
    cwd: repo,
    env,
    pool,
    repos,
    ...(caches ? { caches } : {}),
    ...(memoryEngine ? { engine: async () => memoryEngine, hostUser: { uid: 1000, gid: 1000 } } : {}),
  });
const clock = async (fn) => {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
};
const spareReady = async () => {
  pool.makeWanted();
  for (let waited = 0; pool.readyCount() === 0; waited += 20) {
    if (waited > 60_000) throw new Error('no spare made in 60 s');
    await new Promise((r) => setTimeout(r, 20));
  }
};
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

try {
  // The first request makes its own task (and builds the image if needed), and asks for a spare.
  const first = await up(context(), {});
  if (!memory) await remove(context(), first.name, { force: true });
  const claims = [];
  let claimed = 0;
  for (let i = 0; i < rounds; i += 1) {
    await spareReady();
    const ctx = context();
    const { ms, value } = await clock(() => up(ctx, {}));
    // The spare taken (the next one is only asked for, made once the server is quiet).
    if (pool.readyCount() === 0) claimed += 1;
    claims.push(ms);
    if (!memory) await remove(context(), value.name, { force: true });
  }
  // Each step of a plan, alone, on a fresh context (as a request gets).
  const steps = {};
  const step = async (name, fn) => {
    const times = [];
    for (let i = 0; i < 5; i += 1) times.push((await clock(() => fn(context()))).ms);
    steps[name] = median(times);
  };
  await step('ctx.engine() (open, ping)', (ctx) => ctx.engine());
  await step('ctx.repo()', (ctx) => ctx.repo());
  await step('effectiveConfig', async (ctx) => ctx.effectiveConfig(await ctx.repo()));
  await step('resolveCommit(HEAD)', async (ctx) => (await ctx.repo()).resolveCommit('HEAD'));
  await step('userIdentity', async (ctx) => (await ctx.repo()).userIdentity());
  await step('checkLimitEnforcement', async (ctx) => checkLimitEnforcement(await ctx.engine(), await ctx.userConfig()));
  await step('chooseTaskTemplate', async (ctx) => {
    const r = await ctx.repo();
    return chooseTaskTemplate(ctx, r, await r.resolveCommit('HEAD'), await ctx.effectiveConfig(r), undefined, true);
  });
  await step('planDisk', async (ctx) => planDisk(await ctx.engine(), { uid: ctx.hostUser.uid, helperImage: 'moat-base:bookworm', env }));
  await step('ensureTemplateImage', async (ctx) => {
    const r = await ctx.repo();
    const config = await ctx.effectiveConfig(r);
    const { root: dir, choice } = await chooseTaskTemplate(ctx, r, await r.resolveCommit('HEAD'), config, undefined, true);
    const user = ctx.sandboxUser(config);
    return ensureTemplateImage(await ctx.engine(), {
      template: choice.template,
      templatesDir: dir,
      baseImage: config.baseImage,
      uid: user.uid,
      gid: user.gid,
      env,
    });
  });
  console.log(`dist: ${dist}; ${rounds} claims (${claimed} from the pool), in-process`);
  console.log(
    `claim (up with a spare ready): median ${median(claims).toFixed(1)} ms, p10 ${pct(claims, 10).toFixed(1)}, p90 ${pct(claims, 90).toFixed(1)}, max ${Math.max(...claims).toFixed(1)}`,
  );
  for (const [name, ms] of Object.entries(steps)) console.log(`  ${name}: ${ms.toFixed(1)} ms (median of 5, alone)`);
} finally {
  await pool.close();
  rmSync(root, { recursive: true, force: true });
}
// The engine's client may keep a connection open: the figures are out, nothing is left to wait for.
process.exit(0);
