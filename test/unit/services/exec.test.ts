import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { up } from '../../../src/service/up.js';
import { execInTask } from '../../../src/service/exec.js';
import { git, type World, worlds } from './world.js';

const world = worlds();
async function task(): Promise<{ w: World; name: string; id: string }> {
  const w = world();
  const record = await up(w.context(), { task: 'alpha' });
  return { w, name: record.name, id: record.containerId! };
}
function streams() {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  stderr.resume();
  return { stdout, stderr, out: () => out };
}

describe('exec against the memory engine', () => {
  it("passes the command's status and output through, and brings its commits home", async () => {
    const { w, name, id } = await task();
    w.engine.onExec(
      (cmd) => cmd[0] === 'build',
      async (call) => {
        // The agent's commit, then a failure: the commit must come home all the same.
        const commit = w.engine.journal.length;
        await w.engine.exec(call.container.id, { cmd: ['commit', 'feature'], user: call.command.user }, { stdout: call.stdout, stderr: call.stderr });
        expect(w.engine.journal.length).toBeGreaterThan(commit);
        call.stdout.write('built\n');
        return 3;
      },
    );
    const io = streams();
    const result = await execInTask(w.context(), name, ['build'], io);
    expect(result.exitCode).toBe(3);
    expect(result.reason).toEqual({ kind: 'exit', code: 3 });
    expect(io.out()).toBe('built\n');
    expect(result.sync?.commits).toBe(1);
    expect(git(w.repo, 'log', '-1', '--format=%s', 'moat/alpha')).toBe('feature');
    // As the sandbox user, in the workspace.
    const run = w.engine.find(id)!.execs.find((e) => e.cmd.includes('build'))!;
    expect(run).toMatchObject({ user: '1000:1000', workdir: '/workspace' });
  });

  it('tells an OOM kill from the kernel counters, not from the status alone', async () => {
    const { w, name } = await task();
    w.engine.onExec(
      (cmd) => cmd[0] === 'hog',
      ({ container }) => {
        container.counters.oomKills += 1;
        return 137;
      },
    );
    w.engine.onExec(
      (cmd) => cmd[0] === 'killed',
      () => 137,
    );
    const oom = await execInTask(w.context(), name, ['hog'], streams(), { sync: false });
    expect(oom.reason).toEqual({ kind: 'oom', code: 137 });
    // The counters are saved: the next kill is judged against them.
    const killed = await execInTask(w.context(), name, ['killed'], streams(), { sync: false });
    expect(killed.reason).toEqual({ kind: 'signal', signal: 'SIGKILL', code: 137 });
  });

  it("passes the caller's interrupt on to the command's process group, and stops listening after", async () => {
    const { w, name, id } = await task();
    let finish: (code: number) => void = () => undefined;
    w.engine.onExec(
      (cmd) => cmd.includes('long'),
      () => new Promise<number>((resolve) => (finish = resolve)),
    );
    const kills: string[][] = [];
    w.engine.onExec(
      (cmd) => cmd[0] === 'sh' && cmd[2]!.includes('/bin/kill'),
      ({ command }) => {
        kills.push(command.cmd);
        finish(130);
        return 0;
      },
    );
    let listener: ((signal: 'INT' | 'TERM') => void) | undefined;
    const io = {
      ...streams(),
      onInterrupt: (l: (signal: 'INT' | 'TERM') => void) => {
        listener = l;
        return () => (listener = undefined);
      },
    };
    const running = execInTask(w.context(), name, ['long'], io, { sync: false });
    while (!w.engine.find(id)!.execs.some((e) => e.cmd.includes('long'))) await new Promise((r) => setTimeout(r, 5));
    listener!('INT');
    const result = await running;
    expect(result.exitCode).toBe(130);
    expect(result.reason).toMatchObject({ kind: 'signal', signal: 'SIGINT' });
    // The command wrote its pid where the kill reads it: the same file, and the signal asked for.
    const command = w.engine.find(id)!.execs.find((e) => e.cmd.includes('long'))!.cmd;
    expect(command.slice(0, 2)).toEqual(['sh', '-c']);
    const pidFile = command[3];
    expect(pidFile).toMatch(/^\/tmp\/\.moat-exec-[0-9a-f]+$/);
    expect(kills).toEqual([['sh', '-c', expect.stringContaining('/bin/kill -"$1"'), pidFile, 'INT']]);
    expect(listener).toBeUndefined();
  });

  it('says the task is not running when its container has stopped, and changes nothing', async () => {
    const { w, name, id } = await task();
    w.engine.kill(id, 137, { oom: true });
    const error = await execInTask(w.context(), name, ['true'], streams()).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_TASK_NOT_RUNNING' });
    expect(w.engine.find(id)?.state).toBe('exited');
  });

  it('refuses an empty command before touching the engine', async () => {
    const { w, name } = await task();
    const before = [...w.engine.journal];
    await expect(execInTask(w.context(), name, [], streams())).rejects.toMatchObject({ code: 'E_USAGE' });
    expect(w.engine.journal).toEqual(before);
  });
});
