import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import Docker from 'dockerode';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureIO, eventually, gitIn, MOAT_BIN, Scratch, serverPids, stopServers } from '../helpers/fixtures.js';

/** The real binary, as a user runs it: exit codes, one-line errors with hints, --json. */
describe('moat CLI', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  function moat(args: string[], options: { cwd?: string; input?: string } = {}) {
    const result = spawnSync(process.execPath, [MOAT_BIN, ...args], {
      cwd: options.cwd ?? scratch.repo,
      env: scratch.env(),
      encoding: 'utf8',
      input: options.input ?? '',
    });
    return { code: result.status, out: result.stdout, err: result.stderr };
  }

  it('up --json, exec passes the status through and pipes stdin, ls --json, down, rm', () => {
    const up = moat(['up', '--task', 'cli', '--json']);
    expect(up.code, up.err).toBe(0);
    expect(JSON.parse(up.out)).toMatchObject({ name: 'cli', branch: 'moat/cli', state: 'running' });

    const exec = moat(['exec', 'cli', '--', 'sh', '-c', 'cat; exit 9'], { input: 'piped\n' });
    expect(exec.code).toBe(9);
    expect(exec.out).toBe('piped\n');

    const ls = moat(['ls', '--json']);
    expect(JSON.parse(ls.out)[0]).toMatchObject({ name: 'cli', state: 'running' });

    expect(moat(['down', 'cli']).code).toBe(0);
    const rm = moat(['rm', 'cli', '--json']);
    expect(rm.code).toBe(0);
    expect(JSON.parse(rm.out)).toMatchObject({ task: 'cli' });
  });

  it.each([
    [['up', '--task', 'Bad Name'], 2, /invalid task name/],
    [['exec', 'ghost', '--', 'true'], 6, /no task named "ghost"/],
    [['frobnicate'], 2, /unknown command/],
  ])('%j fails with exit %i, one line and a hint', (args, code, message) => {
    const result = moat(args);
    expect(result.code).toBe(code);
    expect(result.err).toMatch(message);
    expect(result.err).toMatch(/hint: /);
    expect(result.err.split('\n').filter((l) => l.startsWith('moat: error')).length).toBe(1);
  });

  it('outside a repository: exit 5 with a hint', () => {
    const result = moat(['up'], { cwd: scratch.root });
    expect(result.code).toBe(5);
    expect(result.err).toMatch(/not inside a git repository/);
  });

  it('a bad config names file:line:col, exit 3, and --json carries the code', () => {
    writeFileSync(join(scratch.repo, 'moat.yaml'), 'template: shell\nlimits:\n  pids: many\n');
    const result = moat(['up', '--task', 'cfg', '--json']);
    expect(result.code).toBe(3);
    expect(result.err).toContain(`${join(scratch.repo, 'moat.yaml')}:3:9: limits.pids:`);
    expect(JSON.parse(result.out).error).toMatchObject({ code: 'E_CONFIG_INVALID', exitCode: 3 });
  });

  it('every command has --help with a description', () => {
    for (const command of [
      'up',
      'exec',
      'shell',
      'run',
      'ls',
      'logs',
      'down',
      'reset',
      'rm',
      'gc',
      'doctor',
      'sync',
      'diff',
      'merge',
      'apply',
      'templates',
      'allow',
      'deny',
      'egress',
      'stats',
      'push',
      'approve',
      'agent',
      'new',
    ]) {
      const result = moat([command, '--help']);
      expect(result.code, command).toBe(0);
      expect(result.out, command).toMatch(/Usage: moat/);
    }
  });

  it('doctor reports the engine and what is enforced', () => {
    const result = moat(['doctor', '--json']);
    const report = JSON.parse(result.out);
    expect(report.checks.find((c: { name: string }) => c.name === 'engine').status).toBe('ok');
    expect(report.enforcement.network).toMatch(/none/);
  });
});

describe('Ctrl-C', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('reaches the command inside (no TTY), which ends; moat exits with its status', async () => {
    const { spawn } = await import('node:child_process');
    await scratch.moat().up({ task: 'intr' });
    const child = spawn(process.execPath, [MOAT_BIN, 'exec', 'intr', '--no-sync', '--', 'sh', '-c', 'echo started; sleep 60; echo never'], {
      cwd: scratch.repo,
      env: scratch.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('started')) child.kill('SIGINT');
    });
    const started = Date.now();
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(130);
    expect(out).not.toContain('never');
    expect(Date.now() - started).toBeLessThan(30_000);
    const ps = captureIO();
    await scratch.moat().exec('intr', ['sh', '-c', 'ps -eo args | grep -c "^sleep 60" || true'], ps.io, { sync: false });
    expect(ps.out().trim()).toBe('0');
  });

  it("ends `moat run` with the command's status, and what the command committed still comes home", async () => {
    const { spawn } = await import('node:child_process');
    const script = 'echo w > w.txt && git add w.txt && git commit -qm before-interrupt && echo started && sleep 60; echo never';
    const child = spawn(process.execPath, [MOAT_BIN, 'run', '--task', 'intr-run', '--', 'sh', '-c', script], {
      cwd: scratch.repo,
      env: scratch.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('started')) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(130);
    expect(out).not.toContain('never');
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/intr-run')).toBe('before-interrupt');
    expect((await scratch.moat().ls()).find((t) => t.name === 'intr-run')).toMatchObject({ state: 'stopped', commits: 1 });
  });
});

describe('moat shell', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it("gives an interactive TTY with the terminal's size, and passes the exit status through", async () => {
    const moat = scratch.moat();
    await moat.up({ task: 'tty' });
    // util-linux `script` gives moat a real terminal of a known size. The keys come a moment
    // later, as a person's would (the size is set right after the shell starts).
    const typed = `(sleep 1.5; printf '%s\\n' 'tty; echo "size=$(stty size)"; exit 3'; sleep 5)`;
    const result = spawnSync('sh', ['-c', `${typed} | script -qec "stty rows 33 cols 101; ${process.execPath} ${MOAT_BIN} shell tty" /dev/null`], {
      cwd: scratch.repo,
      env: scratch.env(),
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status, result.stdout).toBe(3);
    expect(result.stdout).toMatch(/\/dev\/pts\/\d+/);
    expect(result.stdout).toContain('size=33 101');
  });
});

/**
 * A command's JSON output without what differs between two calls at different moments whoever
 * runs them: times and ages (ageSeconds ticks between the calls), ids and pids of each creation.
 */
const VOLATILE_FIELDS = new Set(['createdAt', 'ageSeconds', 'baseCommit', 'syncedTip', 'image', 'creatorPid', 'containerId']);
function stableFields(out: string): unknown {
  return out === '' ? out : JSON.parse(out, (key, value: unknown) => (VOLATILE_FIELDS.has(key) ? undefined : value));
}

/** Short commands run on a warm server when one is up for this build and environment (bin/moat.js). */
describe('the warm CLI server', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());
  const runDir = () => join(scratch.root, 'run', `moat-${process.getuid!()}`);

  function moat(args: string[], env: Record<string, string> = {}) {
    const result = spawnSync(process.execPath, [MOAT_BIN, ...args], { cwd: scratch.repo, env: scratch.env(env), encoding: 'utf8', input: '' });
    return { code: result.status, out: result.stdout, err: result.stderr };
  }

  it('gives the same output and status as a command in its own process, and only to its own environment', async () => {
    const first = moat(['ls', '--json']);
    expect(first.code).toBe(0);
    // The first served command starts a server for the next ones.
    const pids = await eventually(
      async () => serverPids(join(scratch.root, 'run')),
      (p) => p.length === 1,
      10_000,
    );
    const sockets = () => readdirSync(runDir()).filter((f) => f.endsWith('.sock'));
    expect(sockets()).toHaveLength(1);

    const cases: string[][] = [
      ['up', '--task', 'served', '--json'],
      ['ls', '--json'],
      ['up', '--task', 'Bad Name'],
      ['down', 'ghost'],
      ['rm', 'served', '--force', '--json'],
    ];
    for (const args of cases) {
      const served = moat(args);
      // The same command in a process of its own, for comparison (state-changing ones are undone first).
      if (args[0] === 'up' && served.code === 0) expect(moat(['rm', '--force', 'served'], { MOAT_SERVER: 'off' }).code).toBe(0);
      if (args[0] === 'rm' && served.code === 0) expect(moat(['up', '--task', 'served'], { MOAT_SERVER: 'off' }).code).toBe(0);
      const alone = moat(args, { MOAT_SERVER: 'off' });
      expect({ args, code: served.code, err: served.err }).toEqual({ args, code: alone.code, err: alone.err });
      expect(stableFields(served.out)).toEqual(stableFields(alone.out));
    }
    // Only the one server answered all of that: no second one was started.
    expect(serverPids(join(scratch.root, 'run'))).toEqual(pids);

    // Another environment is another server's: this one never runs its commands.
    expect(moat(['ls'], { MOAT_OTHER: '1' }).code).toBe(0);
    await eventually(
      async () => sockets().length,
      (n) => n === 2,
      10_000,
    );
  });

  it("carries large input and output unchanged, in order, with the command's status", async () => {
    expect(moat(['up', '--task', 'pipes']).code).toBe(0);
    await eventually(
      async () => serverPids(join(scratch.root, 'run')).length,
      (n) => n >= 1,
      10_000,
    );
    const input = randomBytes(8 * 1024 * 1024);
    const result = spawnSync(
      process.execPath,
      [MOAT_BIN, 'exec', 'pipes', '--no-sync', '--', 'sh', '-c', 'sha256sum; head -c 4000000 /dev/zero; echo done >&2; exit 3'],
      { cwd: scratch.repo, env: scratch.env(), input, maxBuffer: 64 * 1024 * 1024 },
    );
    expect(result.status).toBe(3);
    const digest = createHash('sha256').update(input).digest('hex');
    expect(result.stdout.subarray(0, 64).toString()).toBe(digest);
    expect(result.stdout.length).toBe(`${digest}  -\n`.length + 4_000_000);
    expect(result.stderr.toString()).toBe('done\n');
    expect(moat(['rm', '--force', 'pipes']).code).toBe(0);
  });

  it('reads relative paths from where the command was given, not from where the server started', async () => {
    const config = join(scratch.root, 'mounts.yaml');
    writeFileSync(config, 'mounts:\n  - source: shared-cache\n    target: /opt/cache\n');
    mkdirSync(join(scratch.repo, 'shared-cache'));
    writeFileSync(join(scratch.repo, 'shared-cache', 'note'), 'from the repository\n');
    const env = scratch.env({ MOAT_CONFIG: config });
    // This environment's server starts in another directory.
    spawnSync(process.execPath, [MOAT_BIN, 'ls'], { cwd: scratch.root, env });
    await eventually(
      async () => serverPids(join(scratch.root, 'run')).length,
      (n) => n >= 2,
      10_000,
    );
    const run = spawnSync(process.execPath, [MOAT_BIN, 'run', '--rm', '--', 'cat', '/opt/cache/note'], { cwd: scratch.repo, env, encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toBe('from the repository\n');
  });

  it('never uses a socket directory another user could enter', () => {
    const runtime = join(scratch.root, 'shared-run');
    const dir = join(runtime, `moat-${process.getuid!()}`);
    mkdirSync(dir, { recursive: true, mode: 0o777 });
    chmodSync(dir, 0o777);
    expect(moat(['ls'], { XDG_RUNTIME_DIR: runtime }).code).toBe(0);
    expect(moat(['ls'], { XDG_RUNTIME_DIR: runtime }).code).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
  });
});

/** The warm server makes the next task ahead of time, and nothing of that outlives it or shows. */
describe('tasks made ahead by the warm server', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  function moat(args: string[], env: Record<string, string> = {}) {
    const result = spawnSync(process.execPath, [MOAT_BIN, ...args], { cwd: scratch.repo, env: scratch.env(env), encoding: 'utf8', input: '' });
    return { code: result.status, out: result.stdout, err: result.stderr };
  }
  const containers = async () => {
    const docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
    return docker.listContainers({ all: true, filters: { label: [`moat.home=${scratch.moat().context.store.homeKey}`] } });
  };
  const taskDirs = () => {
    const dir = join(scratch.home, 'repos');
    return existsSync(dir) ? readdirSync(dir).flatMap((repo) => readdirSync(join(dir, repo, 'tasks'))) : [];
  };

  it('a named task neither takes one nor causes one to be made', async () => {
    expect(moat(['run', '--rm', '--task', 'named-1', '--', 'true']).code).toBe(0);
    await eventually(
      async () => serverPids(join(scratch.root, 'run')).length,
      (n) => n === 1,
      10_000,
    );
    expect(moat(['run', '--rm', '--task', 'named-2', '--', 'true']).code).toBe(0);
    // Time enough for one to be made, were it wanted.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await containers()).toEqual([]);
  });

  it('a second run takes a container started before it was asked for, and its work comes home', async () => {
    expect(moat(['run', '--rm', '--', 'true']).code).toBe(0);
    // The server now makes one ahead: nobody's task, so `ls` and commands by name do not see it.
    expect(moat(['run', '--rm', '--', 'true']).code).toBe(0);
    // The run's own task is removed by its server after the status: a served command waits for that.
    expect(moat(['ls', '--json']).code).toBe(0);
    const [pooled] = await eventually(containers, (list) => list.length === 1 && list[0]!.State === 'running', 20_000);
    const pooledName = pooled!.Labels['moat.task']!;
    expect(JSON.parse(moat(['ls', '--json']).out)).toEqual([]);
    expect(moat(['exec', pooledName, '--', 'true']).code).toBe(6);
    // gc in a process of its own leaves a live server's task alone.
    expect(moat(['gc', '--json'], { MOAT_SERVER: 'off' }).code).toBe(0);
    expect((await containers()).map((c) => c.Id)).toEqual([pooled!.Id]);

    const asked = Date.now();
    const run = moat(['run', '--', 'sh', '-c', 'echo made > ahead.txt && git add ahead.txt && git commit -qm ahead']);
    expect(run.code, run.err).toBe(0);
    expect(run.err).toContain(`task ${pooledName} finished`);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', `moat/${pooledName}`)).toBe('ahead');
    const record = (await scratch.moat().ls()).find((t) => t.name === pooledName);
    expect(record).toMatchObject({ state: 'stopped', commits: 1 });
    // The container the work ran in was there before the run was asked for.
    expect(pooled!.Created * 1000).toBeLessThan(asked);
  });

  it('a request of another shape is not served by it, and stopping the server removes it all', async () => {
    await eventually(containers, (list) => list.length === 1, 20_000);
    const pooled = (await containers())[0]!;
    // Different limits: a different sandbox, made on request.
    scratch.writeConfig('limits:\n  pids: 300\n');
    const other = moat(['run', '--rm', '--', 'true']);
    expect(other.code, other.err).toBe(0);
    expect(other.err).not.toContain(pooled.Labels['moat.task']);
    expect((await containers()).map((c) => c.Id)).toContain(pooled.Id);
    await stopServers(join(scratch.root, 'run'));
    const left = await containers();
    expect(left.map((c) => c.Id)).not.toContain(pooled.Id);
    expect(left).toEqual([]);
    // Only the tasks the user ran are left: none made ahead.
    const records = await scratch.moat().ls();
    expect(taskDirs().sort()).toEqual(records.map((r) => r.name).sort());
    expect(
      readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes(scratch.home) && !records.some((r) => l.includes(`/${r.name}/`))),
    ).toEqual([]);
  });

  it('after the server is killed, gc collects what it had made ahead', async () => {
    const before = taskDirs();
    expect(moat(['run', '--rm', '--', 'true']).code).toBe(0);
    await eventually(
      async () => serverPids(join(scratch.root, 'run')).length,
      (n) => n === 1,
      10_000,
    );
    expect(moat(['run', '--rm', '--', 'true']).code).toBe(0);
    await eventually(containers, (list) => list.length === 1 && list[0]!.State === 'running', 20_000);
    for (const pid of serverPids(join(scratch.root, 'run'))) process.kill(pid, 'SIGKILL');
    await eventually(
      async () => serverPids(join(scratch.root, 'run')).filter((pid) => existsSync(`/proc/${pid}`)).length,
      (n) => n === 0,
      10_000,
    );
    expect(moat(['gc', '--json'], { MOAT_SERVER: 'off' }).code).toBe(0);
    expect(await containers()).toEqual([]);
    expect(taskDirs().sort()).toEqual(before.sort());
  });

  it('ls -a shows a spare task, marked, and gc --all removes it while its server goes on serving', async () => {
    expect(moat(['run', '--rm', '--', 'true']).code).toBe(0);
    const [server] = await eventually(
      async () => serverPids(join(scratch.root, 'run')).filter((pid) => existsSync(`/proc/${pid}`)),
      (p) => p.length === 1,
      10_000,
    );
    expect(moat(['run', '--rm', '--', 'true']).code).toBe(0);
    // The run's own task is removed by its server after the status: a served command waits for that.
    expect(moat(['ls', '--json']).code).toBe(0);
    const [pooled] = await eventually(containers, (list) => list.length === 1 && list[0]!.State === 'running', 20_000);
    const spareName = pooled!.Labels['moat.task']!;
    // Not the user's task: plain ls leaves it out; ls -a shows it, marked.
    const names = (args: string[]) => (JSON.parse(moat(args).out) as Array<{ name: string }>).map((t) => t.name);
    expect(names(['ls', '--json'])).not.toContain(spareName);
    expect((JSON.parse(moat(['ls', '-a', '--json']).out) as Array<{ spare?: boolean }>).filter((t) => t.spare)).toEqual([
      expect.objectContaining({ name: spareName, spare: true, state: 'pooled', commits: 0 }),
    ]);
    expect(
      moat(['ls', '-a'])
        .out.split('\n')
        .find((line) => line.startsWith(spareName)),
    ).toMatch(/^\S+\s+spare \(made ahead\)\s/);
    // gc without --all leaves a live server's spare alone; with it, removes it.
    expect(JSON.parse(moat(['gc', '--json']).out)).toMatchObject({ removedSpares: [] });
    const gc = moat(['gc', '--all', '--json']);
    expect(gc.code, gc.err).toBe(0);
    expect(JSON.parse(gc.out)).toMatchObject({ removedSpares: [spareName] });
    expect(await containers()).toEqual([]);
    expect(taskDirs()).not.toContain(spareName);
    expect(names(['ls', '-a', '--json'])).not.toContain(spareName);
    // The server that had made it is still up, and the next run it serves works (made from scratch).
    expect(existsSync(`/proc/${server}`)).toBe(true);
    const run = moat(['run', '--', 'sh', '-c', 'echo after > after.txt && git add after.txt && git commit -qm after']);
    expect(run.code, run.err).toBe(0);
    const ran = /task (\S+) finished/.exec(run.err)?.[1];
    expect(ran).toBeDefined();
    expect(ran).not.toBe(spareName);
    expect(serverPids(join(scratch.root, 'run'))).toContain(server);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', `moat/${ran}`)).toBe('after');
  });
});
