import { spawnSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { up } from '../../../src/service/up.js';
import { execInTask } from '../../../src/service/exec.js';
import { pendingMarkers } from '../../../src/service/pending-sync.js';
import { WORKSPACE_DIR } from '../../../src/domain/sandbox-spec.js';
import { git, worlds } from './world.js';

const world = worlds();

/**
 * An exec whose sync could not read the workspace (every read of it failed) ends with a warning,
 * and its work must then be read before the next command on the task, also in the same process
 * (the library, the warm server): its marker was left `running` by a live process, which made it
 * due only once that process ended, so the next command ran first and could lose the commit
 * (issue 19: a pod evicted by that next command).
 */
describe('an exec whose sync could not read the workspace', () => {
  it('leaves its work due: the next command on the task, in the same process, brings the commit home first', async () => {
    const w = world();
    const ctx = w.context();
    const record = await up(ctx, { task: 'alpha' });
    let broken = true;
    w.engine.onExec(
      (cmd) => cmd[0] === 'sh' && cmd[1] === '-c' && cmd[3] === 'moat-sync',
      ({ container, command, stdout, stderr }) => {
        if (broken) {
          stderr.write('the sandbox did not answer\n');
          return 1;
        }
        const dir = w.sandbox.workspace(container);
        const run = spawnSync('sh', ['-c', command.cmd[2]!.replaceAll(WORKSPACE_DIR, dir), ...command.cmd.slice(3)], {
          cwd: dir,
          env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' },
        });
        stdout.write(run.stdout);
        return run.status ?? 1;
      },
    );
    const io = () => ({ stdout: new PassThrough().resume(), stderr: new PassThrough().resume() });
    // The commit's exec reads the work through a sync exec of its own (as for a pod's workspace).
    const first = await execInTask(ctx, 'alpha', ['commit', 'feature'], io(), { sync: true, captureWork: false });
    expect(first.exitCode).toBe(0);
    expect(first.sync?.warning).toMatch(/could not read the task's repository/);
    expect(git(w.repo, 'rev-parse', 'refs/heads/moat/alpha')).toBe(record.baseCommit);
    expect((await pendingMarkers(ctx.store, record)).map((marker) => marker.due)).toEqual([true]);
    broken = false;
    // What moat/alpha holds as the next command starts (as a command that evicts its pod would).
    let atStart = '';
    w.engine.onExec(
      (cmd) => cmd[0] === 'probe',
      () => {
        atStart = git(w.repo, 'log', '-1', '--format=%s', 'refs/heads/moat/alpha');
        return 0;
      },
    );
    expect((await execInTask(ctx, 'alpha', ['probe'], io(), { sync: true, captureWork: false })).exitCode).toBe(0);
    expect(atStart).toBe('feature');
    expect(await pendingMarkers(ctx.store, record)).toEqual([]);
  });
});
