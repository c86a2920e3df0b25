import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { gitIn, MOAT_COMMAND, Scratch } from '../helpers/fixtures.js';

/** The real binary without a terminal (stdin a pipe), as a script or CI runs it. */
function cli(scratch: Scratch) {
  return (args: string[], env: Record<string, string> = {}, input = '') => {
    const result = spawnSync(MOAT_COMMAND, args, { cwd: scratch.repo, env: scratch.env(env), encoding: 'utf8', input });
    return { code: result.status, out: result.stdout, err: result.stderr };
  };
}

const taskBranches = (scratch: Scratch) => gitIn(scratch.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/').split('\n').filter(Boolean);

describe('moat run leaves no empty task behind', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());
  const moat = cli(scratch);

  it('removes a task that left no work, without --rm; keeps one with work and says how to see it', async () => {
    const empty = moat(['run', '--task', 'nothing', '--', 'sh', '-c', 'echo out; exit 4']);
    expect(empty.code).toBe(4);
    expect(empty.out).toBe('out\n');
    expect(empty.err).toContain('task nothing finished (exit 4) and was removed: it left no work');
    expect(await scratch.moat().ls()).toEqual([]);
    expect(taskBranches(scratch)).toEqual([]);

    const committed = moat(['run', '--task', 'work', '--', 'sh', '-c', 'echo w > w.txt && git add w.txt && git commit -qm work']);
    expect(committed.code, committed.err).toBe(0);
    expect(committed.err).toContain('1 commit(s) on moat/work: see it with moat diff work');
    const uncommitted = moat(['run', '--task', 'dirty', '--', 'sh', '-c', 'echo d > d.txt']);
    expect(uncommitted.code, uncommitted.err).toBe(0);
    expect(uncommitted.err).toContain('uncommitted work: see it with moat diff dirty');
    expect((await scratch.moat().ls()).map((t) => [t.name, t.state]).sort()).toEqual([
      ['dirty', 'stopped'],
      ['work', 'stopped'],
    ]);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/work')).toBe('work');
  });

  it('--keep keeps a task without work; --rm is the default, and with --keep a usage error that makes nothing', async () => {
    const kept = moat(['run', '--keep', '--task', 'kept', '--', 'true']);
    expect(kept.code, kept.err).toBe(0);
    expect(kept.err).toContain('kept on moat/kept, with no work');
    expect((await scratch.moat().ls()).find((t) => t.name === 'kept')).toMatchObject({ state: 'stopped', commits: 0 });

    expect(moat(['run', '--rm', '--task', 'gone', '--', 'true']).code).toBe(0);
    expect((await scratch.moat().ls()).find((t) => t.name === 'gone')).toBeUndefined();

    const both = moat(['run', '--rm', '--keep', '--task', 'both', '--', 'true']);
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/^moat: error: --rm and --keep contradict each other\n {2}hint: /);
    expect(taskBranches(scratch)).not.toContain('refs/heads/moat/both');
  });
});

describe('moat run keeps a task whose work it could not judge', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());
  const moat = cli(scratch);

  it('keeps the task when the snapshot of uncommitted work fails (a file git cannot read), and says why', async () => {
    const result = moat(['run', '--task', 'unreadable', '--', 'sh', '-c', 'echo x > out.txt; chmod 000 out.txt']);
    expect(result.code, result.err).toBe(0);
    expect(result.err).toContain('kept on moat/unreadable, as its uncommitted work could not be read (the snapshot failed)');
    expect((await scratch.moat().ls()).find((t) => t.name === 'unreadable')).toMatchObject({ state: 'stopped' });
    expect(taskBranches(scratch)).toContain('refs/heads/moat/unreadable');
  });

  it('keeps a task whose only output is a file over 50 MiB', async () => {
    const result = moat(['run', '--task', 'large', '--', 'sh', '-c', 'head -c 62914560 /dev/zero > big.bin']);
    expect(result.code, result.err).toBe(0);
    expect(result.err).toContain('0 commit(s) on moat/large, and 1 uncommitted file(s) over 50 MiB: see it with moat diff large');
    expect((await scratch.moat().ls()).find((t) => t.name === 'large')).toMatchObject({ state: 'stopped' });
  });
});

describe('-t without a terminal', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());
  const moat = cli(scratch);

  it('exec -t runs without a TTY, prints the output and passes the status through, with one note', async () => {
    await scratch.moat().up({ task: 'notty' });
    for (const env of [{}, { MOAT_SERVER: 'off' }]) {
      const result = moat(['exec', '-t', 'notty', '--', 'sh', '-c', 'echo hello; test -t 0 || echo no-tty; exit 3'], env);
      expect(result.code).toBe(3);
      expect(result.out).toBe('hello\nno-tty\n');
      expect(result.err).toBe('moat: stdin is not a terminal: running without a TTY (-t ignored)\n');
    }
    // Input still reaches the command, and its end too (a TTY would wait for Ctrl-D forever).
    const piped = moat(['exec', '--tty', 'notty', '--', 'wc', '-l'], {}, 'one\ntwo\n');
    expect(piped.code).toBe(0);
    expect(piped.out.trim()).toBe('2');
  });

  it('run --tty and shell do the same', () => {
    const run = moat(['run', '--tty', '--', 'sh', '-c', 'echo ran; exit 5']);
    expect(run.code).toBe(5);
    expect(run.out).toBe('ran\n');
    expect(run.err).toContain('moat: stdin is not a terminal: running without a TTY (--tty ignored)\n');
    const shell = moat(['shell', 'notty', '--bash'], {}, 'echo from-shell\nexit 6\n');
    expect(shell.code).toBe(6);
    expect(shell.out).toContain('from-shell\n');
    expect(shell.err).toContain('moat: stdin is not a terminal: running without a TTY\n');
  });
});

describe('rm when the final sync fails', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());
  const moat = cli(scratch);

  it('refuses (exit 5, the cause, how to force) and keeps workspace, branch and record; --force removes them', async () => {
    await scratch.moat().up({ task: 'broken' });
    // The agent breaks its own repository: its work can no longer be read.
    expect(moat(['exec', 'broken', '--no-sync', '--', 'sh', '-c', 'echo work > new.txt && echo garbage > .git/HEAD']).code).toBe(0);
    const workspace = scratch.moat().context.store.workspacePath((await scratch.moat().context.repo()).key, 'broken');
    for (const env of [{}, { MOAT_SERVER: 'off' }]) {
      const refused = moat(['rm', 'broken'], env);
      expect(refused.code).toBe(5);
      const errors = refused.err.split('\n').filter((l) => l.startsWith('moat: error:'));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/task broken was not removed: its latest work could not be brought home first \(could not read the task's repository/);
      expect(refused.err).toContain('use --force to discard anyway: moat rm --force broken');
      expect(existsSync(`${workspace}/new.txt`)).toBe(true);
      expect(taskBranches(scratch)).toEqual(['refs/heads/moat/broken']);
      expect((await scratch.moat().ls()).map((t) => t.name)).toEqual(['broken']);
    }
    // --json is served by the warm server too: the same refusal, as data.
    const json = moat(['rm', 'broken', '--json']);
    expect(json.code).toBe(5);
    expect(JSON.parse(json.out).error).toMatchObject({ code: 'E_SYNC_FAILED', exitCode: 5 });

    const forced = moat(['rm', '--force', 'broken']);
    expect(forced.code, forced.err).toBe(0);
    expect(existsSync(workspace)).toBe(false);
    expect(taskBranches(scratch)).toEqual([]);
    expect(await scratch.moat().ls()).toEqual([]);
  });
});
