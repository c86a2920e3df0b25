import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { captureIO, gitIn, inspect, Scratch, scratchPool } from '../helpers/fixtures.js';

const pool = scratchPool();
const scratch = pool.scratch;
afterEach(pool.cleanup);

async function containersOf(s: Scratch): Promise<Docker.ContainerInfo[]> {
  const docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
  return docker.listContainers({ all: true, filters: { label: [`moat.home=${s.moat().context.store.homeKey}`] } });
}

function branches(repo: string): string[] {
  return gitIn(repo, 'for-each-ref', '--format=%(refname)', 'refs/heads', 'refs/moat').split('\n').filter(Boolean);
}

describe('task lifecycle', () => {
  it('up creates branch, workspace and container; down keeps branch and commits; rm discards all', async () => {
    const s = scratch();
    const moat = s.moat();
    const record = await moat.up({ task: 'life' });
    expect(branches(s.repo)).toContain('refs/heads/moat/life');
    expect(gitIn(s.repo, 'rev-parse', 'moat/life')).toBe(gitIn(s.repo, 'rev-parse', 'HEAD'));
    expect((await inspect(record.containerId!)).State.Running).toBe(true);

    await moat.exec('life', ['sh', '-c', 'echo work > work.txt && git add work.txt && git commit -qm "agent work"'], captureIO().io);
    expect(gitIn(s.repo, 'log', '-1', '--format=%s', 'moat/life')).toBe('agent work');
    // The work came home from the snapshot the command's own exec left, not from a second exec.
    const gitDir = join(moat.context.store.workspacePath(record.repoKey, 'life'), '.git');
    expect(readdirSync(gitDir).filter((f) => f.startsWith('moat-work-'))).toHaveLength(1);

    const down = await moat.down('life');
    expect(down.removedContainer).toBe(true);
    expect(await containersOf(s)).toEqual([]);
    // No mount of the task's capped volume lingers while it has no container; reset brings it back.
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(join(s.home, 'repos'));
    await moat.reset('life');
    const back = captureIO();
    await moat.exec('life', ['cat', 'work.txt'], back.io, { sync: false });
    expect(back.out()).toBe('work\n');
    await moat.down('life');
    expect(gitIn(s.repo, 'show', 'moat/life:work.txt')).toBe('work');
    expect((await moat.ls())[0]).toMatchObject({ name: 'life', state: 'stopped', commits: 1 });

    await expect(moat.rm('life')).rejects.toMatchObject({ code: 'E_CONFIRM' });
    expect(branches(s.repo)).toContain('refs/heads/moat/life');
    await moat.rm('life', { force: true });
    expect(branches(s.repo)).toEqual(['refs/heads/main']);
    expect(await moat.ls()).toEqual([]);
  });

  it('run = up + exec + down: the exit status passes through and the commits stay', async () => {
    const s = scratch();
    const moat = s.moat();
    const result = await moat.run(['sh', '-c', 'echo run > run.txt && git add -A && git commit -qm run-commit && exit 5'], captureIO().io, { task: 'oneshot' });
    expect(result.exitCode).toBe(5);
    expect(result.sync?.commits).toBe(1);
    expect(gitIn(s.repo, 'log', '-1', '--format=%s', 'moat/oneshot')).toBe('run-commit');
    expect(await containersOf(s)).toEqual([]);
  });

  it("commits survive the container's death and come home through a helper container", async () => {
    const s = scratch();
    const moat = s.moat();
    const record = await moat.up({ task: 'dies' });
    await moat.exec('dies', ['sh', '-c', 'echo x > x && git add x && git commit -qm before-death'], captureIO().io, { sync: false });
    const docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
    await docker.getContainer(record.containerId!).remove({ force: true });
    const sync = await moat.sync('dies');
    expect(sync.commits).toBe(1);
    expect(gitIn(s.repo, 'log', '-1', '--format=%s', 'moat/dies')).toBe('before-death');
    expect((await moat.ls())[0]!.state).toBe('missing');
    await moat.reset('dies');
    expect((await moat.ls())[0]!.state).toBe('running');
  });

  it('diff shows committed and uncommitted work; a 2 GiB sparse file does not break the snapshot', async () => {
    const s = scratch();
    const moat = s.moat();
    await moat.up({ task: 'wip' });
    await moat.exec(
      'wip',
      ['sh', '-c', 'echo c > committed.txt && git add -A && git commit -qm c && echo u > uncommitted.txt && truncate -s 2G sparse.bin'],
      captureIO().io,
      { sync: false },
    );
    const diff = await moat.diff('wip', { stat: true });
    expect(diff.commits).toBe(1);
    expect(diff.uncommitted).toBe(true);
    // The huge file stays out of the snapshot (and so out of the user's object store), counted.
    expect(diff.files.map((f) => f.path).sort()).toEqual(['committed.txt', 'uncommitted.txt']);
    expect(diff.sync.skippedLarge).toBe(1);
    // The user's checkout did not change.
    expect(existsSync(join(s.repo, 'uncommitted.txt'))).toBe(false);
  });

  it('several tasks on one repository run side by side', async () => {
    const s = scratch();
    const moat = s.moat();
    await Promise.all(['p1', 'p2', 'p3'].map((task) => moat.up({ task })));
    await Promise.all(
      ['p1', 'p2', 'p3'].map((task) => moat.exec(task, ['sh', '-c', `echo ${task} > f && git add f && git commit -qm ${task}`], captureIO().io)),
    );
    for (const task of ['p1', 'p2', 'p3']) expect(gitIn(s.repo, 'show', `moat/${task}:f`)).toBe(task);
  });

  it('--base starts from another ref', async () => {
    const s = scratch();
    gitIn(s.repo, 'tag', 'v1');
    writeFileSync(join(s.repo, 'later.txt'), 'later\n');
    gitIn(s.repo, 'add', '-A');
    gitIn(s.repo, 'commit', '-qm', 'later');
    const record = await s.moat().up({ task: 'old', base: 'v1' });
    expect(record.baseCommit).toBe(gitIn(s.repo, 'rev-parse', 'v1'));
    const cap = captureIO();
    await s.moat().exec('old', ['sh', '-c', 'ls'], cap.io, { sync: false });
    expect(cap.out()).not.toContain('later.txt');
  });

  it('gc removes what a crashed `up` left, and never a branch with commits', async () => {
    const s = scratch();
    const moat = s.moat();
    const record = await moat.up({ task: 'crashed' });
    // Simulate kill -9 during up: the record still says "creating", by a process that is gone.
    const store = moat.context.store;
    await store.save({ ...record, state: 'creating', creatorPid: 2 ** 22 + 12345 });
    const orphan = await moat.up({ task: 'kept' });
    await moat.exec('kept', ['sh', '-c', 'echo k > k && git add k && git commit -qm kept'], captureIO().io);
    // The record is lost; the container (and a mounted volume, where disks are capped) is what a crash leaves.
    const { rm } = await import('node:fs/promises');
    await rm(join(store.taskDir(orphan.repoKey, 'kept'), 'task.json'));
    const result = await moat.gc();
    expect(result.removedTasks).toEqual(['crashed']);
    expect(result.removedContainers).toHaveLength(1);
    expect(await containersOf(s)).toEqual([]);
    expect(branches(s.repo)).not.toContain('refs/heads/moat/crashed');
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(store.taskDir(orphan.repoKey, 'kept'));
    // The orphan's commits stay on its branch even though its record is gone.
    expect(gitIn(s.repo, 'log', '-1', '--format=%s', 'moat/kept')).toBe('kept');
  });
});

describe('bad input changes nothing', () => {
  async function expectNothingMade(s: Scratch): Promise<void> {
    expect(branches(s.repo).filter((b) => b.includes('moat'))).toEqual([]);
    expect(await containersOf(s)).toEqual([]);
    const tasksDir = join(s.home, 'repos');
    if (existsSync(tasksDir)) for (const repo of readdirSync(tasksDir)) expect(readdirSync(join(tasksDir, repo, 'tasks'))).toEqual([]);
  }

  it.each([
    ['an invalid task name', { task: 'Bad Name' }, 'E_TASK_NAME'],
    ['an unknown template', { task: 'ok', template: 'nope' }, 'E_TEMPLATE_UNKNOWN'],
    ['a base that does not exist', { task: 'ok', base: 'no-such-branch' }, 'E_GIT_REF'],
  ])('%s', async (_what, options, code) => {
    const s = scratch();
    await expect(s.moat().up(options)).rejects.toMatchObject({ code });
    await expectNothingMade(s);
  });

  it('a duplicate task name', async () => {
    const s = scratch();
    await s.moat().up({ task: 'dup' });
    await expect(s.moat().up({ task: 'dup' })).rejects.toMatchObject({ code: 'E_TASK_EXISTS' });
    expect((await containersOf(s)).length).toBe(1);
  });

  it('not a git repository', async () => {
    const s = scratch();
    await expect(s.moat({ cwd: s.home.replace(/home$/, '') }).up({ task: 'x' })).rejects.toMatchObject({ code: 'E_NOT_GIT_REPO', exitCode: 5 });
  });

  it('an unborn HEAD', async () => {
    const s = scratch({ commit: false });
    await expect(s.moat().up({ task: 'x' })).rejects.toMatchObject({ code: 'E_GIT_HEAD' });
    await expectNothingMade(s);
  });

  it('an engine that is not running', async () => {
    const s = scratch();
    await expect(
      s
        .moat({ env: { MOAT_ENGINE_SOCKET: join(s.root, 'no.sock'), MOAT_ENGINE: 'docker', DOCKER_HOST: `unix://${join(s.root, 'no.sock')}` } })
        .up({ task: 'x' }),
    ).rejects.toMatchObject({ exitCode: 4 });
    await expectNothingMade(s);
  });

  it('a repository config that widens', async () => {
    const s = scratch();
    writeFileSync(join(s.repo, 'moat.yaml'), 'env:\n  STEAL: "1"\n');
    await expect(s.moat().up({ task: 'x' })).rejects.toMatchObject({ code: 'E_CONFIG_WIDENS' });
    await expectNothingMade(s);
  });

  it('a container that fails to start is rolled back', async () => {
    const s = scratch();
    // A tmpfs bigger than any machine: the engine refuses to start the container.
    s.writeConfig('limits:\n  cpus: 1000\n');
    await expect(s.moat().up({ task: 'x' })).rejects.toMatchObject({ exitCode: 4 });
    await expectNothingMade(s);
  });
});

describe('run --rm', () => {
  it('removes a task that left nothing, keeps one with work', async () => {
    const s = scratch();
    const moat = s.moat();
    const empty = await moat.run(['true'], captureIO().io, { task: 'empty', rm: true });
    expect(empty.removed).toBe(true);
    expect(branches(s.repo)).toEqual(['refs/heads/main']);
    const kept = await moat.run(['sh', '-c', 'echo x > untracked-work.txt'], captureIO().io, { task: 'kept', rm: true });
    expect(kept.removed).toBe(false);
    expect(branches(s.repo)).toContain('refs/heads/moat/kept');
    expect(await containersOf(s)).toEqual([]);
  });
});

describe('--env', () => {
  it('passes a named host variable (and NAME=value) into the sandbox, and nothing else', async () => {
    const s = scratch();
    const moat = s.moat({ env: { SHARED_FLAG: 'from-host', NOT_SHARED: 'stays-out' } });
    await moat.up({ task: 'envs', env: ['SHARED_FLAG', 'MODE=test'] });
    const cap = captureIO();
    await moat.exec('envs', ['sh', '-c', 'echo "$SHARED_FLAG $MODE ${NOT_SHARED:-absent}"'], cap.io, { sync: false });
    expect(cap.out().trim()).toBe('from-host test absent');
    await moat.reset('envs');
    const again = captureIO();
    await moat.exec('envs', ['sh', '-c', 'echo "$SHARED_FLAG $MODE"'], again.io, { sync: false });
    expect(again.out().trim()).toBe('from-host test');
    await expect(moat.up({ task: 'bad-env', env: ['UNSET_VARIABLE_X'] })).rejects.toMatchObject({ code: 'E_USAGE' });
  });
});
