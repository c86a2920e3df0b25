import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import type Docker from 'dockerode';
import { WAIT_SCRIPT } from '../../src/engine/exec-ahead-script.js';
import { envCommand } from '../../src/engine/env-command.js';
import {
  dropAhead,
  hasAhead,
  openAhead,
  podmanExecAheadMode,
  runTaken,
  takeAhead,
  type ExecStream,
  type WaitingSinks,
} from '../../src/engine/podman-exec-ahead.js';

/**
 * The exec opened ahead without an engine: the waiting shell runs as a local process (/bin/sh, as
 * in the sandbox), its stdin the "exec stream", its stdout and stderr the demultiplexed sinks.
 */
function localShell(): { open: (sinks: WaitingSinks) => Promise<{ exec: Docker.Exec; stream: ExecStream }>; killed: () => void; status: () => number | null } {
  let child: ReturnType<typeof spawn> | undefined;
  return {
    open: async (sinks) => {
      child = spawn('/bin/sh', ['-c', WAIT_SCRIPT, 'moat-wait'], { stdio: ['pipe', 'pipe', 'pipe'] });
      const proc = child;
      proc.stdout!.on('data', (chunk: Buffer) => sinks.out(chunk));
      proc.stderr!.on('data', (chunk: Buffer) => sinks.err(chunk));
      proc.on('exit', () => setTimeout(() => sinks.end(), 100));
      const stream = Object.assign(new EventEmitter(), {
        write: (data: Buffer) => proc.stdin!.write(data),
        end: () => proc.stdin!.end(),
        destroy: () => proc.stdin!.destroy(),
      }) as unknown as ExecStream;
      const exec = { inspect: async () => ({ Running: false, ExitCode: proc.exitCode ?? (proc.signalCode ? 137 : null) }) } as unknown as Docker.Exec;
      return { exec, stream };
    },
    killed: () => child?.kill('SIGKILL'),
    status: () => child?.exitCode ?? null,
  };
}

function capture() {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough().on('data', (c: Buffer) => out.push(c));
  const stderr = new PassThrough().on('data', (c: Buffer) => err.push(c));
  return { stdout, stderr, out: () => Buffer.concat(out).toString(), err: () => Buffer.concat(err).toString() };
}

let n = 0;
const key = () => `unit|container-${(n += 1)}`;

describe('an exec opened ahead (Podman, podman-exec-ahead.ts)', () => {
  it("runs the command's words with its working directory, environment, output and status, and passes its stdin", async () => {
    const k = key();
    const shell = localShell();
    expect(await openAhead(k, '1000:1000', shell.open)).toBe(true);
    expect(hasAhead(k)).toBe(true);
    const words = envCommand(['sh', '-c', 'pwd; echo "$GREETING"; cat; echo oops >&2; exit 7'], '/tmp', { GREETING: "it's here" });
    const taken = await takeAhead(k, '1000:1000', words);
    expect(taken).toBeDefined();
    // Taken: the next command opens its own.
    expect(hasAhead(k)).toBe(false);
    const io = capture();
    const code = await runTaken(taken!, { ...io, stdin: Readable.from([Buffer.from('line one\n'), 'line two\n']) }, async () => -1);
    expect(code).toBe(7);
    expect(io.out()).toBe("/tmp\nit's here\nline one\nline two\n");
    expect(io.err()).toBe('oops\n');
  });

  it("without stdin, the command's stdin ends at once; status 0 comes in-band", async () => {
    const k = key();
    const shell = localShell();
    await openAhead(k, 'u', shell.open);
    const taken = await takeAhead(k, 'u', ['sh', '-c', 'cat; echo done']);
    const io = capture();
    expect(await runTaken(taken!, io, async () => -1)).toBe(0);
    expect(io.out()).toBe('done\n');
  });

  it('output written in several steps all comes before the status', async () => {
    const k = key();
    await openAhead(k, 'u', localShell().open);
    const taken = await takeAhead(k, 'u', ['sh', '-c', 'echo before; echo after']);
    const io = capture();
    expect(await runTaken(taken!, io, async () => -1)).toBe(0);
    expect(io.out()).toBe('before\nafter\n');
  });

  it('a waiting exec that died is not taken: the caller opens its own (fallback)', async () => {
    const k = key();
    const shell = localShell();
    expect(await openAhead(k, 'u', shell.open)).toBe(true);
    shell.killed();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(hasAhead(k)).toBe(false);
    expect(await takeAhead(k, 'u', ['true'])).toBeUndefined();
  });

  it('a command as another user, or a container with none waiting, opens its own', async () => {
    const k = key();
    await openAhead(k, '1000:1000', localShell().open);
    expect(await takeAhead(k, '0:0', ['true'])).toBeUndefined();
    expect(hasAhead(k)).toBe(true);
    dropAhead(k);
    expect(hasAhead(k)).toBe(false);
    expect(await takeAhead(k, '1000:1000', ['true'])).toBeUndefined();
  });

  it('an exec that could not be opened says so (false) and is not kept', async () => {
    const k = key();
    expect(await openAhead(k, 'u', () => Promise.reject(new Error('refused')))).toBe(false);
    expect(hasAhead(k)).toBe(false);
  });

  it('a shell that says anything but R while waiting is dropped', async () => {
    const k = key();
    const ready = openAhead(k, 'u', async (sinks) => {
      setImmediate(() => sinks.out(Buffer.from('hello')));
      return {
        exec: {} as Docker.Exec,
        stream: Object.assign(new EventEmitter(), { write: () => true, end: () => undefined, destroy: () => undefined }) as unknown as ExecStream,
      };
    });
    expect(await ready).toBe(false);
    expect(hasAhead(k)).toBe(false);
  });

  it("a command whose shell is killed under it: the exec's own status decides, the output held back is passed on", async () => {
    const k = key();
    const shell = localShell();
    await openAhead(k, 'u', shell.open);
    const taken = await takeAhead(k, 'u', ['sh', '-c', 'printf partial; sleep 30']);
    const io = capture();
    const running = runTaken(taken!, io, async () => 137);
    await new Promise((resolve) => setTimeout(resolve, 300));
    shell.killed();
    expect(await running).toBe(137);
    expect(io.out()).toBe('partial');
  });

  it('a waiting exec still opening after 2 s is given up: the command opens its own', async () => {
    const k = key();
    void openAhead(k, 'u', () => new Promise(() => undefined));
    expect(await takeAhead(k, 'u', ['true'])).toBeUndefined();
    expect(hasAhead(k)).toBe(false);
  });

  it('MOAT_PODMAN_EXEC_AHEAD: unset or spares, off; anything else is refused with a hint (exit 3)', () => {
    expect(podmanExecAheadMode(undefined)).toBe('spares');
    expect(podmanExecAheadMode('')).toBe('spares');
    expect(podmanExecAheadMode('spares')).toBe('spares');
    expect(podmanExecAheadMode('off')).toBe('off');
    expect(() => podmanExecAheadMode('always')).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID', exitCode: 3 }));
  });
});
