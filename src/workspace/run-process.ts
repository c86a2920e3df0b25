import { spawn } from 'node:child_process';

export interface ProcessResult {
  stdout: string;
  stderr: string;
  /** undefined when the program could not be started at all (see `error`). */
  exitCode: number | undefined;
  error?: Error;
}

export interface ProcessOptions {
  cwd: string;
  env: Record<string, string>;
  input?: string;
  maxBytes?: number;
  uid?: number;
  gid?: number;
}

/** What starts runProcess's programs: spawnProcess here, or another process's (setProcessRunner). */
export type ProcessRunner = (file: string, args: string[], options: ProcessOptions) => Promise<ProcessResult>;

let runner: ProcessRunner | undefined;

/**
 * Has runProcess start its programs through `next` (undefined: from this process again). The MCP
 * server starts them from a small helper process instead of forking itself: a fork makes every
 * page of the forking process copy-on-write, and the server's next big read_file then faults
 * its pages back (src/workspace/spawner.ts).
 */
export function setProcessRunner(next: ProcessRunner | undefined): void {
  runner = next;
}

/**
 * Runs a program with an argv array (never a shell) and collects its output. Deliberately small:
 * host git runs a dozen times per task operation, and a process library's load and per-call cost
 * showed up in `moat run`'s start-up time (see docs/benchmarks.md).
 */
export function runProcess(file: string, args: string[], options: ProcessOptions): Promise<ProcessResult> {
  return runner ? runner(file, args, options) : spawnProcess(file, args, options);
}

/** runProcess in this process: a child of its own. */
export function spawnProcess(file: string, args: string[], options: ProcessOptions): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      uid: options.uid,
      gid: options.gid,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const max = options.maxBytes ?? 256 * 1024 * 1024;
    child.stdout!.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) child.kill('SIGKILL');
      else out.push(chunk);
    });
    child.stderr!.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error) => resolve({ stdout: '', stderr: '', exitCode: undefined, error }));
    child.on('close', (code, signal) => {
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        exitCode: code ?? (signal ? 128 + ({ SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal]! : 1),
      });
    });
    if (options.input !== undefined) {
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(options.input);
    }
  });
}
