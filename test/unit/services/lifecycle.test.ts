import { spawnSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { up } from '../../../src/service/up.js';
import { down, remove, reset, run } from '../../../src/service/lifecycle.js';
import { gc } from '../../../src/service/gc.js';
import { PendingSyncs } from '../../../src/service/pending-sync.js';
import { execInTask } from '../../../src/service/exec.js';
import { workspaceVolume } from '../../../src/service/task-container.js';
import type { TaskRecord } from '../../../src/domain/task.js';
import { git, type World, worlds } from './world.js';

const world = worlds();
async function task(): Promise<{ w: World; record: TaskRecord }> {
  const w = world();
  return { w, record: await up(w.context(), { task: 'alpha', template: 'agentish' }) };
}
/** The agent commits in the sandbox; moat is not told (no sync). */
async function agentCommits(w: World, record: TaskRecord, message: string): Promise<void> {
  const sink = new PassThrough().resume();
  expect(await w.engine.exec(record.containerId!, { cmd: ['commit', message], user: '1000:1000' }, { stdout: sink, stderr: sink })).toBe(0);
}
const refs = (w: World) => git(w.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/');
const at = (w: World, prefix: string) => w.engine.journal.findIndex((line) => line.startsWith(prefix));

describe('down', () => {
  it('brings the commits home before the container goes, and keeps the workspace', async () => {
    const { w, record } = await task();
    await agentCommits(w, record, 'unsynced');
    const result = await down(w.context(), 'alpha');
    expect(result.removedContainer).toBe(true);
    expect(result.sync?.commits).toBe(1);
    expect(git(w.repo, 'log', '-1', '--format=%s', 'moat/alpha')).toBe('unsynced');
    const snapshot = w.engine.journal.findIndex((line) => line.includes('moat-sync'));
    expect(snapshot).toBeGreaterThanOrEqual(0);
    expect(snapshot).toBeLessThan(at(w, `remove moat-${record.repoKey}-alpha`));
    expect(w.engine.containers.size).toBe(0);
    expect(w.engine.volumes.has(workspaceVolume(record))).toBe(true);
    expect((await w.context().store.get(record.repoKey, 'alpha'))?.state).toBe('stopped');
  });

  it('a task whose work cannot be read still goes down, its volume kept and a warning given', async () => {
    const { w, record } = await task();
    await agentCommits(w, record, 'unsynced');
    w.sandbox.breakSnapshots(5);
    const result = await down(w.context(), 'alpha');
    expect(result.sync?.warning).toMatch(/could not read the task's repository/);
    expect(result.sync?.commitsUnknown).toBe(true);
    // The work is still in the volume, for the next container (reset) to bring home.
    expect(w.engine.volumes.has(workspaceVolume(record))).toBe(true);
    // A fresh helper container was tried too, and removed.
    expect(w.engine.journal.some((line) => line.startsWith(`create moat-${record.repoKey}-alpha-helper`))).toBe(true);
    expect(w.engine.containers.size).toBe(0);
  });
});

describe('rm', () => {
  it('never deletes a workspace whose work could not be brought home', async () => {
    const { w, record } = await task();
    await agentCommits(w, record, 'only in the sandbox');
    w.sandbox.breakSnapshots(5);
    const error = await remove(w.context(), 'alpha').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_SYNC_FAILED' });
    expect(w.engine.find(record.containerId!)?.state).toBe('running');
    expect(w.engine.volumes.has(workspaceVolume(record))).toBe(true);
    expect(await w.context().store.get(record.repoKey, 'alpha')).toBeDefined();
    expect(refs(w)).toBe('refs/heads/moat/alpha');
    expect(w.engine.journal.filter((line) => line.startsWith('remove volume'))).toEqual([]);
  });

  it('refuses while commits are unmerged, and removes everything once forced', async () => {
    const { w, record } = await task();
    await agentCommits(w, record, 'work');
    await expect(remove(w.context(), 'alpha')).rejects.toMatchObject({ code: 'E_CONFIRM', details: { unmergedCommits: 1 } });
    // The refused rm brought the commit home, and removed nothing.
    expect(git(w.repo, 'log', '-1', '--format=%s', 'moat/alpha')).toBe('work');
    expect(w.engine.containers.size).toBe(1);
    const result = await remove(w.context(), 'alpha', { force: true });
    expect(result).toEqual({ task: 'alpha', branchDeleted: true, unmergedCommits: 1 });
    expect(w.engine.containers.size).toBe(0);
    expect(w.engine.volumes.size).toBe(0);
    expect(refs(w)).toBe('');
    expect(await w.context().store.get(record.repoKey, 'alpha')).toBeUndefined();
  });

  it('removes a task without work without being forced', async () => {
    const { w } = await task();
    expect(await remove(w.context(), 'alpha')).toEqual({ task: 'alpha', branchDeleted: true, unmergedCommits: 0 });
    expect(w.engine.containers.size).toBe(0);
    expect(w.engine.volumes.size).toBe(0);
  });
});

describe('reset', () => {
  it('replaces the container over the same volume, after bringing the work home, and seeds the home again', async () => {
    const { w, record } = await task();
    await agentCommits(w, record, 'before reset');
    const homeFiles = [...w.engine.find(record.containerId!)!.files.entries()];
    expect(homeFiles).toEqual([['/home/agent/.agentish/config.toml', Buffer.from('model = "x"\n')]]);
    const fresh = await reset(w.context(), 'alpha');
    expect(fresh.containerId).not.toBe(record.containerId);
    expect(w.engine.find(record.containerId!)).toBeUndefined();
    const container = w.engine.find(fresh.containerId!)!;
    expect(container.state).toBe('running');
    expect(container.spec.workspace).toEqual({ kind: 'volume', name: workspaceVolume(record) });
    expect([...container.files.entries()]).toEqual(homeFiles);
    expect(git(w.repo, 'log', '-1', '--format=%s', 'moat/alpha')).toBe('before reset');
    // The workspace went on: the new container sees the commit.
    expect(git(w.sandbox.workspace(container), 'log', '-1', '--format=%s')).toBe('before reset');
    const snapshot = w.engine.journal.findIndex((line) => line.includes('moat-sync'));
    expect(snapshot).toBeGreaterThanOrEqual(0);
    expect(snapshot).toBeLessThan(at(w, `remove moat-${record.repoKey}-alpha`));
  });

  it('starts a task whose container died, and exec works again', async () => {
    const { w, record } = await task();
    w.engine.kill(record.containerId!, 137, { oom: true });
    const sink = new PassThrough().resume();
    await expect(execInTask(w.context(), 'alpha', ['true'], { stdout: sink, stderr: sink })).rejects.toMatchObject({ code: 'E_TASK_NOT_RUNNING' });
    await reset(w.context(), 'alpha');
    w.engine.onExec(
      (cmd) => cmd[0] === 'true',
      () => 0,
    );
    expect((await execInTask(w.context(), 'alpha', ['true'], { stdout: sink, stderr: sink })).exitCode).toBe(0);
  });
});

describe('run on the warm server', () => {
  const io = () => ({ stdout: new PassThrough().resume(), stderr: new PassThrough().resume() });

  it('removes a task without work after the status went out: judged first, then removed whole', async () => {
    const w = world();
    const syncs = new PendingSyncs();
    let statusSent = () => undefined as void;
    const ctx = w.context({ syncs, statusSent: new Promise<void>((resolve) => (statusSent = resolve)) });
    const result = await run(ctx, ['true'], io(), { task: 'alpha' });
    // The memory engine knows no `true` (127): the status is the command's, and it left no work all the same.
    expect(result).toMatchObject({ work: false, removed: true });
    // Before the status: the work was read (the snapshot ran), the record says it is going, owned by this process.
    expect(w.engine.journal.some((line) => line.includes('moat-sync'))).toBe(true);
    const record = await ctx.store.get((await ctx.repo()).key, 'alpha');
    expect(record).toMatchObject({ state: 'removing', creatorPid: process.pid });
    // Nobody's task any more: ls leaves it out (another process's too), gc sees it.
    expect(await ctx.store.list(record!.repoKey)).toEqual([]);
    expect((await ctx.store.listAll({ pooled: true })).map((r) => r.name)).toEqual(['alpha']);
    statusSent();
    await syncs.waitAll();
    expect(await ctx.store.get(record!.repoKey, 'alpha')).toBeUndefined();
    expect(w.engine.containers.size).toBe(0);
    expect(w.engine.volumes.size).toBe(0);
    expect(refs(w)).toBe('');
  });

  it('keeps a task with work as before: stopped, with its branch, nothing left to the server', async () => {
    const w = world();
    const syncs = new PendingSyncs();
    const ctx = w.context({ syncs, statusSent: new Promise<void>(() => undefined) });
    const result = await run(ctx, ['commit', 'work'], io(), { task: 'alpha' });
    expect(result).toMatchObject({ exitCode: 0, work: true, removed: false });
    const record = await ctx.store.get((await ctx.repo()).key, 'alpha');
    expect(record?.state).toBe('stopped');
    expect(record?.containerId).toBeUndefined();
    expect(w.engine.containers.size).toBe(0);
    expect(git(w.repo, 'log', '-1', '--format=%s', 'moat/alpha')).toBe('work');
  });

  it('gc collects a task whose server died while removing it, its branch deleted only at its base', async () => {
    const w = world();
    const ctx = w.context();
    const record = await up(ctx, { task: 'alpha', template: 'agentish' });
    const dead = Number(spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim());
    await ctx.store.save({ ...record, state: 'removing', creatorPid: dead });
    const result = await gc(w.context());
    expect(result.removedTasks).toEqual(['alpha']);
    expect(await ctx.store.get(record.repoKey, 'alpha')).toBeUndefined();
    expect(w.engine.containers.size).toBe(0);
    expect(w.engine.volumes.size).toBe(0);
    expect(refs(w)).toBe('');
  });
});
