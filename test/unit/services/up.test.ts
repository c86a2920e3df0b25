import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { up } from '../../../src/service/up.js';
import { LABEL } from '../../../src/domain/labels.js';
import { engineError, MemoryEngine } from '../../../src/engine/memory-engine.js';
import { git, type World, worlds } from './world.js';

const world = worlds();

describe('up against the memory engine', () => {
  it('makes one hardened container over a labelled volume seeded with the task branch', async () => {
    const w = world();
    const ctx = w.context();
    const record = await up(ctx, { task: 'alpha' });

    expect(record.state).toBe('running');
    expect(record.workspace).toBe('volume');
    const containers = [...w.engine.containers.values()];
    expect(containers).toHaveLength(1);
    const [container] = containers;
    expect(container!.id).toBe(record.containerId);
    expect(container!.state).toBe('running');
    const spec = container!.spec;
    // The hardening as the engine received it.
    expect(spec).toMatchObject({ readOnlyRoot: true, capDrop: ['ALL'], noNewPrivileges: true, init: true, network: 'none', user: '1000:1000' });
    expect(spec.egressMount).toBeUndefined();
    expect(spec.helperMount).toBeUndefined();
    expect(spec.readOnlyMounts).toEqual([]);
    expect(spec.workspace).toEqual({ kind: 'volume', name: `moat-${record.repoKey}-alpha-workspace` });
    const labels = { [LABEL.task]: 'alpha', [LABEL.repo]: record.repoKey, [LABEL.home]: ctx.store.homeKey, [LABEL.role]: 'task' };
    expect(spec.labels).toMatchObject(labels);
    // The volume carries the task's labels (gc finds it by them) and belongs to the sandbox user.
    const volume = w.engine.volumes.get(`moat-${record.repoKey}-alpha-workspace`);
    expect(volume?.labels).toMatchObject({ ...labels, [LABEL.role]: 'workspace' });
    expect(volume?.owner).toEqual({ uid: 1000, gid: 1000 });
    // Seeded through the engine: the workspace holds the user's commit on the task branch.
    const workspace = w.sandbox.workspace(container!);
    expect(git(workspace, 'rev-parse', 'HEAD')).toBe(record.baseCommit);
    expect(git(workspace, 'symbolic-ref', 'HEAD')).toBe('refs/heads/moat/alpha');
    expect(git(w.repo, 'rev-parse', 'refs/heads/moat/alpha')).toBe(record.baseCommit);
    // The volume comes before the container that mounts it, the seed after the start.
    const order = w.engine.journal.filter((line) => /^(create|start|exec)/.test(line)).map((line) => line.split(' ').slice(0, 2).join(' '));
    expect(order.slice(0, 4)).toEqual([
      `create volume`,
      `create moat-${record.repoKey}-alpha`,
      `start moat-${record.repoKey}-alpha`,
      `exec moat-${record.repoKey}-alpha`,
    ]);
  });

  it('refuses a taken name before anything is made', async () => {
    const w = world();
    await up(w.context(), { task: 'alpha' });
    const before = [...w.engine.journal];
    await expect(up(w.context(), { task: 'alpha' })).rejects.toMatchObject({ code: 'E_TASK_EXISTS' });
    expect(w.engine.journal).toEqual(before);
  });

  it.each([
    ['the container cannot be created', (w: World) => w.engine.failAt('create', () => engineError(500, 'no space left on device'))],
    ['the container cannot start', (w: World) => w.engine.failAt('start', () => engineError(500, 'runc failed'))],
    ['the volume cannot be made', (w: World) => w.engine.failAt('createVolume', () => engineError(500, 'disk full'))],
    ['the seed fails', (w: World) => w.engine.failAt('exec', (cmd) => (cmd.includes('moat-seed.bundle') ? engineError(500, 'stream dropped') : undefined))],
  ])('rolls back everything it made when %s', async (_what, breakIt) => {
    const w = world();
    const ctx = w.context();
    breakIt(w);
    await expect(up(ctx, { task: 'alpha' })).rejects.toThrow();
    expect(w.engine.containers.size).toBe(0);
    expect(w.engine.volumes.size).toBe(0);
    expect(await ctx.store.listAll({ pooled: true })).toEqual([]);
    expect(git(w.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/', 'refs/moat/')).toBe('');
    expect(existsSync(ctx.store.taskDir((await ctx.repo()).key, 'alpha'))).toBe(false);
  });

  it('rolls back when the template home cannot be written, and says so in moat terms', async () => {
    const w = world();
    const ctx = w.context();
    // The template writes a file into the home: that exec fails.
    w.engine.onExec(
      (cmd) => cmd[3] === 'seed',
      () => 1,
    );
    const error = await up(ctx, { task: 'alpha', template: 'agentish' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_ENGINE_FAILED' });
    expect(w.engine.containers.size).toBe(0);
    expect(w.engine.volumes.size).toBe(0);
    expect(git(w.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/')).toBe('');
  });

  it('builds the template image once, then reuses it', async () => {
    const w = world();
    const first = await up(w.context(), { task: 'one' });
    const second = await up(w.context(), { task: 'two' });
    expect(first.image).toBe(second.image);
    expect(w.engine.journal.filter((line) => line.startsWith('build '))).toEqual([`build ${first.image}`]);
  });

  it('fails with the missing base image named, making nothing', async () => {
    const w = world();
    w.engine.images.clear();
    await expect(up(w.context(), { task: 'alpha' })).rejects.toMatchObject({ code: 'E_IMAGE_MISSING' });
    expect(w.engine.journal).toEqual([]);
    expect(git(w.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/')).toBe('');
  });

  it("on Podman, the missing base image's hint moves it from Docker instead of building it", async () => {
    const w = world({ engine: new MemoryEngine({ kind: 'podman' }) });
    const error = await up(w.context(), { task: 'alpha' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_IMAGE_MISSING', hint: expect.stringContaining('docker save moat-base:bookworm | podman load') });
    expect(w.engine.journal).toEqual([]);
  });
});
