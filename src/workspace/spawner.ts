import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setProcessRunner, spawnProcess, type ProcessOptions, type ProcessResult, type ProcessRunner } from './run-process.js';

// From dist/workspace/, the CLI's bundle in dist/cli/ and src/workspace/ (the unit tests) alike: the
// helper runs built (npm run build).
const MAIN = fileURLToPath(new URL('../../dist/workspace/spawner-main.js', import.meta.url));

interface Answer {
  id: number;
  result: Omit<ProcessResult, 'error'>;
  error?: { message: string; code?: string };
}

/**
 * Starts a long-lived server's programs (`moat mcp`'s and the warm CLI server's: git for a diff,
 * a sync or a spare, above all) from a small helper process (spawner-main.ts) instead of the
 * server itself. Node starts a child with fork(), after
 * which every page of the parent is copy-on-write: each page the server writes next takes a page
 * fault (30-37 µs on the VMs measured), and a 1 MiB read_file writes megabytes (the read, the
 * text, the message). A read right after a diff_task, whose git ran from the server, took
 * ~1,000 more faults and 15-25 ms more than a read after a read (docs/benchmarks.md, issue 15's
 * sixth pass). The warm server's loop, at 150-200 MB, stalls 15-50 ms in each fork() under load,
 * and a spare's git child forked just before a claim arrived delayed that claim (issue 19's sixth
 * pass). The helper is forked once, when the server starts and its heap is small; its own
 * pages are few, and what a fork costs it is its own, off the server's thread.
 *
 * The same runProcess code runs there (the same argv, environment, input, limits, uid and gid),
 * so a program behaves as it did. Where the helper cannot be reached (it left, or never started),
 * a program is started here as before: slower reads afterwards, never a failed command. A helper
 * that leaves while a program runs ends that call as one that could not be started.
 */
export class Spawner {
  private child: ChildProcess | undefined;
  private readonly waiting = new Map<number, (result: ProcessResult) => void>();
  private next = 0;

  /** Starts the helper now (the server's start, while its heap is small), not at the first program. */
  start(): void {
    if (this.child) return;
    const child = fork(MAIN, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [], serialization: 'advanced' });
    this.child = child;
    child.on('message', (answer: Answer) => {
      const resolve = this.waiting.get(answer.id);
      if (!resolve) return;
      this.waiting.delete(answer.id);
      this.idle();
      resolve({ ...answer.result, ...(answer.error ? { error: Object.assign(new Error(answer.error.message), { code: answer.error.code }) } : {}) });
    });
    const gone = () => {
      if (this.child !== child) return;
      this.child = undefined;
      const error = new Error('the moat process starter left while the program ran');
      for (const resolve of this.waiting.values()) resolve({ stdout: '', stderr: '', exitCode: undefined, error });
      this.waiting.clear();
    };
    child.on('exit', gone);
    child.on('error', gone);
    this.idle();
  }

  /** runProcess's runner: the program started by the helper, or here when there is none. */
  readonly run: ProcessRunner = (file, args, options) => {
    const child = this.child;
    if (!child?.connected) return spawnProcess(file, args, options);
    return new Promise((resolve) => {
      const id = this.next++;
      this.waiting.set(id, resolve);
      child.ref();
      child.channel?.ref();
      const request: { id: number; file: string; args: string[]; options: ProcessOptions } = { id, file, args, options };
      child.send(request, (error) => {
        if (!error) return;
        // Not sent, so not started: start it here.
        this.waiting.delete(id);
        this.idle();
        void spawnProcess(file, args, options).then(resolve);
      });
    });
  };

  /** Leaves the helper (it leaves when its channel closes). */
  stop(): void {
    const child = this.child;
    this.child = undefined;
    if (child?.connected) child.disconnect();
  }

  /** With no program running, the helper does not keep the server's process alive. */
  private idle(): void {
    if (this.waiting.size > 0 || !this.child) return;
    this.child.unref();
    this.child.channel?.unref();
  }
}

/**
 * A long-lived server's start (`moat mcp`, the warm CLI server): its helper forked now, while its
 * heap is small, and runProcess starting this process's programs from it from now on. Returns
 * what leaves the helper.
 */
export function startProgramsFromHelper(): () => void {
  const spawner = new Spawner();
  spawner.start();
  setProcessRunner(spawner.run);
  return () => spawner.stop();
}
