import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { up } from '../../../src/service/up.js';
import { gc } from '../../../src/service/gc.js';
import { listTasks } from '../../../src/service/list.js';
import { TaskPool } from '../../../src/service/task-pool.js';
import { workspaceVolume } from '../../../src/service/task-container.js';
import { LABEL } from '../../../src/domain/labels.js';
import type { SandboxSpec } from '../../../src/domain/sandbox-spec.js';
import { git, type World, worlds } from './world.js';

const world = worlds();
/** A pid no process has any more. */
function deadPid(): number {
  return Number(spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim());
}

describe('gc', () => {
  it("removes by label only what is this home's and orphaned", async () => {
    const w = world();
    const ctx = w.context();
    const alpha = await up(ctx, { task: 'alpha' });
    const spec = w.engine.find(alpha.containerId!)!.spec;
    const home = ctx.store.homeKey;
    const like = (name: string, labels: Record<string, string>): SandboxSpec => ({ ...spec, name, labels: { ...spec.labels, ...labels } });
    const make = async (s: SandboxSpec) => {
      const id = await w.engine.createContainer(s);
      await w.engine.startContainer(id);
      return id;
    };
    await make(like('ghost', { [LABEL.task]: 'ghost' }));
    await make(like('alpha-helper', { [LABEL.role]: 'helper' }));
    await make(like('alpha-stale', {}));
    const foreign = await make(like('other-home', { [LABEL.task]: 'ghost', [LABEL.home]: 'someoneelse' }));
    const unlabelled = await make({ ...spec, name: 'not-moat', labels: { app: 'web' } });
    const owner = { uid: 1000, gid: 1000, image: alpha.image };
    await w.engine.createVolume('ghost-workspace', { [LABEL.home]: home, [LABEL.repo]: alpha.repoKey, [LABEL.task]: 'ghost' }, owner);
    await w.engine.createVolume('other-workspace', { [LABEL.home]: 'someoneelse', [LABEL.repo]: alpha.repoKey, [LABEL.task]: 'ghost' }, owner);

    const result = await gc(ctx);
    expect(result.removedContainers.sort()).toEqual(['alpha-helper', 'alpha-stale', 'ghost']);
    expect(result.removedVolumes).toEqual(['ghost-workspace']);
    expect(result.removedTasks).toEqual([]);
    expect([...w.engine.containers.keys()].sort()).toEqual([alpha.containerId!, foreign, unlabelled].sort());
    expect([...w.engine.volumes.keys()].sort()).toEqual([workspaceVolume(alpha), 'other-workspace'].sort());
    // Nothing left to do: a second gc removes nothing.
    expect(await gc(ctx)).toEqual({ removedContainers: [], removedVolumes: [], removedTasks: [], removedSpares: [] });
  });

  it('removes a task whose up died half-way, whole, and leaves one whose creator lives', async () => {
    const w = world();
    const ctx = w.context();
    const dead = await up(ctx, { task: 'dead' });
    await ctx.store.save({ ...dead, state: 'creating', creatorPid: deadPid() });
    const alive = await up(ctx, { task: 'alive' });
    await ctx.store.save({ ...alive, state: 'creating', creatorPid: process.pid });

    const result = await gc(ctx);
    expect(result.removedTasks).toEqual(['dead']);
    expect(await ctx.store.get(dead.repoKey, 'dead')).toBeUndefined();
    expect(w.engine.find(dead.containerId!)).toBeUndefined();
    expect(w.engine.volumes.has(workspaceVolume(dead))).toBe(false);
    expect(git(w.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/')).toBe('refs/heads/moat/alive');
    expect(w.engine.find(alive.containerId!)?.state).toBe('running');
  });
});

describe('the warm server pool', () => {
  it('a nameless up takes the task made ahead: its container, its name, a branch of its own', async () => {
    const w = world();
    const pool = new TaskPool();
    const ctx = () => w.context({ pool });
    const first = await up(ctx());
    // Nothing was made ahead yet: the first request made its own, and asked for a spare.
    pool.makeWanted();
    const spare = await waitForSpare(w);
    const containersBefore = w.engine.containers.size;
    const second = await up(ctx());
    expect(second.name).not.toBe(first.name);
    expect(second.name).toBe(spare.name);
    expect(second.containerId).toBe(spare.containerId);
    expect(second.state).toBe('running');
    // Claimed, not made: no container was created for the second request.
    expect(w.engine.containers.size).toBe(containersBefore);
    const container = w.engine.find(second.containerId!)!;
    expect(container.state).toBe('running');
    expect(container.spec.labels[LABEL.task]).toBe(second.name);
    expect(git(w.repo, 'rev-parse', `refs/heads/${second.branch}`)).toBe(second.baseCommit);
    expect(git(w.repo, 'for-each-ref', '--format=%(refname)', 'refs/moat/pool/')).toBe('');
    const record = await w.context().store.get(second.repoKey, second.name);
    expect(record).toMatchObject({ state: 'running' });
    expect(record?.poolKey).toBeUndefined();
    await pool.close();
  });

  it('a spare whose container died is thrown away and the request makes its own', async () => {
    const w = world();
    const pool = new TaskPool();
    const ctx = () => w.context({ pool });
    await up(ctx());
    pool.makeWanted();
    const made = await waitForSpare(w);
    w.engine.kill(made.containerId!, 137);
    const second = await up(ctx());
    expect(second.name).not.toBe(made.name);
    expect(w.engine.find(second.containerId!)?.state).toBe('running');
    expect(w.engine.find(made.containerId!)).toBeUndefined();
    expect(await w.context().store.get(made.repoKey, made.name)).toBeUndefined();
    await pool.close();
  });

  it('gc --all removes a spare, and the claim decides: the request then makes its own', async () => {
    const w = world();
    const pool = new TaskPool();
    await up(w.context({ pool }));
    pool.makeWanted();
    const made = await waitForSpare(w);
    const result = await gc(w.context(), { all: true });
    expect(result.removedSpares).toEqual([made.name]);
    expect(w.engine.find(made.containerId!)).toBeUndefined();
    const second = await up(w.context({ pool }));
    expect(second.name).not.toBe(made.name);
    expect(w.engine.find(second.containerId!)?.state).toBe('running');
    await pool.close();
    // The pool made another spare meanwhile only if asked; closing removed whatever it had.
    expect((await w.context().store.listAll({ pooled: true })).filter((r) => r.state === 'pooled')).toEqual([]);
  });

  it('gVisor tasks are made ahead too, and a spare serves only a request of its own isolation', async () => {
    const w = world();
    const pool = new TaskPool();
    const ctx = () => w.context({ pool });
    await up(ctx(), { isolation: 'gvisor' });
    pool.makeWanted();
    const spare = await waitForSpare(w);
    expect(spare.isolation).toBe('gvisor');
    expect(w.engine.find(spare.containerId!)!.spec.isolation).toEqual({ kind: 'gvisor', runtime: 'runsc' });
    // A runc request does not take the gVisor spare: it makes its own, under runc.
    const runc = await up(ctx());
    expect(runc.name).not.toBe(spare.name);
    expect(runc.isolation).toBeUndefined();
    expect(w.engine.find(runc.containerId!)!.spec.isolation).toEqual({ kind: 'runc' });
    expect((await w.context().store.get(spare.repoKey, spare.name))?.state).toBe('pooled');
    // A gVisor request takes it: claimed, not made.
    const containersBefore = w.engine.containers.size;
    const gvisor = await up(ctx(), { isolation: 'gvisor' });
    expect(gvisor.name).toBe(spare.name);
    expect(gvisor.isolation).toBe('gvisor');
    expect(gvisor.state).toBe('running');
    expect(w.engine.containers.size).toBe(containersBefore);
    await pool.close();
  });

  it('a gVisor spare is listed and removed like a runc one (ls --all, gc --all)', async () => {
    const w = world();
    const pool = new TaskPool();
    await up(w.context({ pool }), { isolation: 'gvisor' });
    pool.makeWanted();
    const made = await waitForSpare(w);
    const listed = (await listTasks(w.context(), { all: true })).find((t) => t.name === made.name);
    expect(listed).toMatchObject({ spare: true, isolation: 'gvisor' });
    const result = await gc(w.context(), { all: true });
    expect(result.removedSpares).toEqual([made.name]);
    expect(w.engine.find(made.containerId!)).toBeUndefined();
    await pool.close();
  });
});

async function waitForSpare(w: World) {
  for (let i = 0; i < 400; i += 1) {
    const spare = (await w.context().store.listAll({ pooled: true })).find((r) => r.state === 'pooled' && r.containerId);
    if (spare) return spare;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('no spare was made');
}
