import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { captureIO, Scratch } from '../helpers/fixtures.js';

describe('exec', () => {
  const scratch = new Scratch();
  let moat: Moat;

  beforeAll(async () => {
    // Small limits so the limit tests are quick.
    scratch.writeConfig('limits:\n  memory: 256m\n  pids: 64\n  nofile: 256\n');
    moat = scratch.moat();
    await moat.up({ task: 'ex' });
  });
  afterAll(() => scratch.cleanup());

  it('streams stdout and stderr separately and passes the exit status through', async () => {
    const cap = captureIO();
    const result = await moat.exec('ex', ['sh', '-c', 'echo out; echo err >&2; exit 42'], cap.io, { sync: false });
    expect(result.exitCode).toBe(42);
    expect(result.reason).toEqual({ kind: 'exit', code: 42 });
    expect(cap.out()).toBe('out\n');
    expect(cap.err()).toBe('err\n');
  });

  it('streams stdin to the command and closes it at EOF', async () => {
    const cap = captureIO('line one\nline two\n');
    const result = await moat.exec('ex', ['wc', '-l'], cap.io, { sync: false });
    expect(result.exitCode).toBe(0);
    expect(cap.out().trim()).toBe('2');
  });

  it('reports 128+signal when the command is killed', async () => {
    const cap = captureIO();
    const result = await moat.exec('ex', ['sh', '-c', 'kill -KILL $$'], cap.io, { sync: false });
    expect(result.exitCode).toBe(137);
    expect(result.reason).toMatchObject({ kind: 'signal', signal: 'SIGKILL' });
  });

  it('a memory hog is OOM-killed and moat says so', async () => {
    const cap = captureIO();
    const result = await moat.exec('ex', ['sh', '-c', 'head -c 1000000000 /dev/zero | tail > /dev/null'], cap.io, { sync: false });
    expect(result.exitCode).not.toBe(0);
    expect(result.reason.kind).toBe('oom');
    expect(result.explanation).toMatch(/memory limit/);
  });

  it('a fork bomb hits the pids limit, moat says so, and the task stays usable', async () => {
    const cap = captureIO();
    // The bomb runs in its own session so its whole process group can be killed afterwards. The
    // shell that watches it forks nothing once the bomb runs (its timer starts first; wait, kill and
    // the loop are builtins): a fork of its own would fail at the limit and end it with status 2.
    const bomb =
      'sleep 2 & timer=$!; setsid sh -c "bomb() { bomb | bomb & }; bomb" 2>/dev/null & pg=$!; wait $timer; while kill -9 -$pg 2>/dev/null; do :; done; exit 3';
    const result = await moat.exec('ex', ['sh', '-c', bomb], cap.io, { sync: false });
    expect(result.exitCode).toBe(3);
    expect(result.reason.kind).toBe('pids-limit');
    expect(result.explanation).toMatch(/process limit/);
    const after = captureIO();
    expect((await moat.exec('ex', ['echo', 'alive'], after.io, { sync: false })).exitCode).toBe(0);
    expect(after.out()).toBe('alive\n');
  });

  it('a sandbox that killed its own processes is back with one reset', async () => {
    await moat.exec('ex', ['sh', '-c', 'kill -9 -1; sleep 1'], captureIO().io, { sync: false });
    // The engine notices the main process died a moment later.
    for (let i = 0; i < 100 && (await moat.ls()).find((t) => t.name === 'ex')!.state === 'running'; i += 1) await new Promise((r) => setTimeout(r, 100));
    await expect(moat.exec('ex', ['true'], captureIO().io, { sync: false })).rejects.toMatchObject({ code: 'E_TASK_NOT_RUNNING' });
    await moat.reset('ex');
    expect((await moat.exec('ex', ['true'], captureIO().io, { sync: false })).exitCode).toBe(0);
  });

  it('open files are capped', async () => {
    const cap = captureIO();
    await moat.exec('ex', ['sh', '-c', 'ulimit -n'], cap.io, { sync: false });
    expect(cap.out().trim()).toBe('256');
  });

  it('an unknown task is a clear error', async () => {
    await expect(moat.exec('nope', ['true'], captureIO().io)).rejects.toMatchObject({ code: 'E_TASK_NOT_FOUND' });
  });
});
