import { spawnSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { up } from '../../../src/service/up.js';
import { syncTask } from '../../../src/service/sync.js';
import { gc } from '../../../src/service/gc.js';
import { WORKSPACE_DIR } from '../../../src/domain/sandbox-spec.js';
import { MoatError } from '../../../src/errors.js';
import type { TaskRecord } from '../../../src/domain/task.js';
import { git, type World, worlds } from './world.js';

const world = worlds();

/**
 * The answer of a sync's exec as an engine that dropped the stream would leave it: the first time,
 * `cut` decides what of the sandbox's real output (moat's snapshot script, run on the workspace)
 * reaches moat, and the exec still reports status 0 (the engine saw the end of a stream, not a
 * failure). Later syncs get the whole answer.
 */
function cutFirstAnswer(w: World, cut: (whole: Buffer) => Buffer): void {
  let cuts = 0;
  w.engine.onExec(
    (cmd) => cmd[0] === 'sh' && cmd[1] === '-c' && cmd[3] === 'moat-sync',
    ({ container, command, stdout }) => {
      const dir = w.sandbox.workspace(container);
      const run = spawnSync('sh', ['-c', command.cmd[2]!.replaceAll(WORKSPACE_DIR, dir), ...command.cmd.slice(3)], {
        cwd: dir,
        env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' },
      });
      stdout.write(cuts++ === 0 ? cut(run.stdout) : run.stdout);
      return run.status ?? 1;
    },
  );
}

async function taskWithCommit(w: World): Promise<TaskRecord> {
  const ctx = w.context();
  const record = await up(ctx, { task: 'alpha' });
  const user = `${record.user.uid}:${record.user.gid}`;
  const io = { stdout: new PassThrough().resume(), stderr: new PassThrough().resume() };
  expect(await w.engine.exec(record.containerId!, { cmd: ['commit', 'feature'], user }, io)).toBe(0);
  return record;
}

/** One line with a hint and a documented exit code (docs: 4 the engine, 5 a git step). */
function expectOneLine(error: unknown, code: string): void {
  expect(error).toBeInstanceOf(MoatError);
  const moatError = error as MoatError;
  expect(moatError.code).toBe(code);
  expect(moatError.message).not.toContain('\n');
  expect(moatError.hint).toBeTruthy();
  expect([4, 5]).toContain(moatError.exitCode);
}

describe('a sync whose answer broke off', () => {
  it('after the header line: read again from a fresh helper, never "moved outside moat", the commit home', async () => {
    const w = world();
    const record = await taskWithCommit(w);
    cutFirstAnswer(w, (whole) => whole.subarray(0, whole.indexOf(0x0a) + 1));
    const ctx = w.context();
    const result = await syncTask(ctx, await ctx.repo(), record);
    // An answer without its bundle is no answer: the same workspace read again brings the commit.
    expect(result.parkedAt).toBeUndefined();
    expect(result.warning).toBeUndefined();
    expect(result.commits).toBe(1);
    expect(git(w.repo, 'log', '-1', '--format=%s', 'refs/heads/moat/alpha')).toBe('feature');
    expect(git(w.repo, 'for-each-ref', '--format=%(refname)', 'refs/moat/')).toBe('');
    expect(w.engine.journal.filter((line) => line.includes('moat-sync'))).toHaveLength(2);
    expect([...w.engine.containers.values()].map((c) => c.spec.labels['moat.role'])).toEqual(['task']);
  });

  it('half-way through the bundle: one line with a hint, nothing half-imported, and the next sync brings it', async () => {
    const w = world();
    const record = await taskWithCommit(w);
    cutFirstAnswer(w, (whole) => whole.subarray(0, whole.indexOf(0x0a) + 1 + Math.floor((whole.length - whole.indexOf(0x0a)) / 2)));
    const ctx = w.context();
    const first = await syncTask(ctx, await ctx.repo(), record).catch((error: unknown) => error);
    expectOneLine(first, 'E_SYNC_FAILED');
    expect(git(w.repo, 'rev-parse', 'refs/heads/moat/alpha')).toBe(record.baseCommit);
    expect(git(w.repo, 'for-each-ref', '--format=%(refname)', 'refs/moat/')).toBe('');
    const second = await syncTask(ctx, await ctx.repo(), (await ctx.store.get(record.repoKey, 'alpha'))!);
    expect(second.commits).toBe(1);
    expect(git(w.repo, 'log', '-1', '--format=%s', 'refs/heads/moat/alpha')).toBe('feature');
  });

  it('the engine unreachable during the read: E_ENGINE_UNREACHABLE, the commit synced before stays, gc after it leaves the task whole', async () => {
    const w = world();
    const record = await taskWithCommit(w);
    const ctx = w.context();
    expect((await syncTask(ctx, await ctx.repo(), record)).commits).toBe(1);
    const unreachable = () =>
      new MoatError('E_ENGINE_UNREACHABLE', `the container engine at ${w.engine.endpoint} is not answering`, { hint: 'check that the engine runs' });
    // Both reads (the task's container, then a fresh helper) meet the engine gone.
    w.engine.failAt('exec', (cmd) => (cmd.includes('moat-sync') ? unreachable() : undefined));
    w.engine.failAt('create', () => unreachable());
    w.engine.failAt('exec', (cmd) => (cmd.includes('moat-sync') ? unreachable() : undefined));
    const current = (await ctx.store.get(record.repoKey, 'alpha'))!;
    const error = await syncTask(ctx, await ctx.repo(), current).catch((e: unknown) => e);
    expectOneLine(error, 'E_ENGINE_UNREACHABLE');
    expect(git(w.repo, 'log', '-1', '--format=%s', 'refs/heads/moat/alpha')).toBe('feature');
    await gc(ctx);
    expect(w.engine.find(record.containerId!)?.state).toBe('running');
    expect([...w.engine.containers.values()].map((c) => c.spec.labels['moat.role'])).toEqual(['task']);
  });
});
