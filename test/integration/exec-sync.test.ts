import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { eventually, gitIn, MOAT_COMMAND, type Scratch, scratchPool, serverPids } from '../helpers/fixtures.js';

/**
 * The warm server sends an exec's status first and brings its commits home right after. Whatever
 * moment moat dies at (kill -9: MOAT_TEST_KILL_AT makes the process SIGKILL itself at that point),
 * the commit reaches moat/<task> with the next moat command, and no commit is lost.
 */
describe('exec: status first, sync right after, no commit lost', () => {
  const pool = scratchPool();
  afterEach(() => pool.cleanup());

  const commit = (message: string) => [
    'sh',
    '-c',
    `echo ${message} > ${message}.txt && git add -A && git -c user.name=a -c user.email=a@a.invalid commit -qm ${message}`,
  ];

  function cli(scratch: Scratch, args: string[], env: Record<string, string> = {}) {
    const result = spawnSync(MOAT_COMMAND, args, { cwd: scratch.repo, env: scratch.env({ MOAT_POOL: 'off', ...env }), encoding: 'utf8', input: '' });
    return { code: result.status, out: result.stdout, err: result.stderr };
  }

  const branchLog = (scratch: Scratch, task: string) => gitIn(scratch.repo, 'log', '--format=%s', `moat/${task}`);
  const markers = (scratch: Scratch) => {
    const tasks = join(scratch.home, 'repos');
    return readdirSync(tasks).flatMap((repo) =>
      readdirSync(join(tasks, repo, 'tasks')).flatMap((task) => {
        const dir = join(tasks, repo, 'tasks', task, 'sync-pending');
        return existsSync(dir) ? readdirSync(dir) : [];
      }),
    );
  };

  /** A task, and a warm server (for the environment `env`) that will run the next exec. */
  async function taskWithServer(scratch: Scratch, task: string, env: Record<string, string>): Promise<number> {
    expect(cli(scratch, ['up', '--task', task], env).code).toBe(0);
    // The first command ran in its own process and started the server for this environment.
    const pids = await eventually(
      async () => serverPids(join(scratch.root, 'run')),
      (p) => p.length === 1,
      10_000,
    );
    expect(pids).toHaveLength(1);
    // The socket answers once the pid file is written.
    return pids[0]!;
  }

  /**
   * The first command of an environment starts its server after it returns: wait for it, so that
   * the cleanup stops it (one starting after the cleanup would outlive the test).
   */
  async function serverStarted(scratch: Scratch): Promise<void> {
    const live = () => serverPids(join(scratch.root, 'run')).filter((pid) => existsSync(`/proc/${pid}`));
    expect(
      await eventually(
        async () => live(),
        (pids) => pids.length === 1,
        10_000,
      ),
    ).toHaveLength(1);
  }

  async function gone(pid: number): Promise<boolean> {
    return (
      (await eventually(
        async () => existsSync(`/proc/${pid}`),
        (alive) => !alive,
        10_000,
      )) === false
    );
  }

  it('the status comes first and the commit follows on moat/<task>, with the next command seeing it', async () => {
    const scratch = pool.scratch();
    await taskWithServer(scratch, 'st', {});
    const exec = cli(scratch, ['exec', 'st', '--', 'sh', '-c', `${commit('one')[2]} && echo out; exit 5`]);
    expect(exec.code).toBe(5);
    expect(exec.out).toBe('out\n');
    // The next command on the task finds the commit home, whenever the sync ended.
    const next = cli(scratch, ['exec', 'st', '--', 'true']);
    expect(next.code).toBe(0);
    expect(branchLog(scratch, 'st')).toContain('one');
    const diff = cli(scratch, ['diff', 'st', '--stat']);
    expect(diff.out).toContain('one.txt');
    expect(
      await eventually(
        async () => markers(scratch),
        (m) => m.length === 0,
      ),
    ).toEqual([]);
  });

  it.each([
    ['exec-after-command', 'exec'],
    ['exec-after-status', 'sync'],
    ['sync-after-read', 'diff'],
    ['sync-after-fetch', 'down'],
    ['exec-after-status', 'ls'],
  ])('warm server killed (kill -9) at %s: the commit arrives with the next `moat %s`', async (point, next) => {
    const scratch = pool.scratch();
    const server = await taskWithServer(scratch, 'k', { MOAT_TEST_KILL_AT: point });
    const exec = cli(scratch, ['exec', 'k', '--', ...commit('killed')], { MOAT_TEST_KILL_AT: point });
    // Killed before the status went out, the client says the server ended; after, the status is the command's.
    expect(exec.code).toBe(point === 'exec-after-command' ? 70 : 0);
    expect(await gone(server)).toBe(true);
    expect(branchLog(scratch, 'k')).not.toContain('killed');
    expect(markers(scratch)).toHaveLength(1);

    const args = { exec: ['exec', 'k', '--', 'true'], sync: ['sync', 'k'], diff: ['diff', 'k', '--stat'], down: ['down', 'k'], ls: ['ls'] }[next]!;
    const result = cli(scratch, args);
    expect(result.code, result.err).toBe(0);
    expect(branchLog(scratch, 'k')).toContain('killed');
    if (next === 'diff') expect(result.out).toContain('killed.txt');
    if (next === 'ls') expect(result.out).toMatch(/moat\/k\s+1\b/);
    expect(markers(scratch)).toEqual([]);
    // sync and diff always run in a process of their own (bin/server-client.js).
    if (next !== 'sync' && next !== 'diff') await serverStarted(scratch);
  });

  it.each(['exec-after-command', 'sync-after-read', 'sync-after-fetch'])(
    'moat in its own process killed (kill -9) at %s: the next exec brings the commit home before its command',
    (point) => {
      const scratch = pool.scratch();
      const own = { MOAT_SERVER: 'off' };
      expect(cli(scratch, ['up', '--task', 'own'], own).code).toBe(0);
      const exec = cli(scratch, ['exec', 'own', '--', ...commit('lost')], { ...own, MOAT_TEST_KILL_AT: point });
      expect(exec.code).toBeNull();
      expect(branchLog(scratch, 'own')).not.toContain('lost');
      // The next exec is killed too, after its command and before its own sync: what is on the
      // branch then came home before its command ran.
      const next = cli(scratch, ['exec', 'own', '--', ...commit('second')], { ...own, MOAT_TEST_KILL_AT: 'exec-after-command' });
      expect(next.code).toBeNull();
      expect(branchLog(scratch, 'own')).toContain('lost');
      expect(branchLog(scratch, 'own')).not.toContain('second');
      const last = cli(scratch, ['exec', 'own', '--', 'sh', '-c', 'exit 4'], own);
      expect(last.code).toBe(4);
      expect(branchLog(scratch, 'own')).toContain('second');
      expect(markers(scratch)).toEqual([]);
    },
  );

  it('server killed before the sync and the container gone too: the commit comes home from the workspace', async () => {
    const scratch = pool.scratch();
    const server = await taskWithServer(scratch, 'dead', { MOAT_TEST_KILL_AT: 'exec-after-status' });
    expect(cli(scratch, ['exec', 'dead', '--', ...commit('orphan')], { MOAT_TEST_KILL_AT: 'exec-after-status' }).code).toBe(0);
    expect(await gone(server)).toBe(true);
    const docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
    const [container] = await docker.listContainers({ filters: { label: ['moat.task=dead', `moat.home=${scratch.moat().context.store.homeKey}`] } });
    await docker.getContainer(container!.Id).remove({ force: true });
    const sync = cli(scratch, ['sync', 'dead']);
    expect(sync.code, sync.err).toBe(0);
    expect(branchLog(scratch, 'dead')).toContain('orphan');
    expect(markers(scratch)).toEqual([]);
  });
});
