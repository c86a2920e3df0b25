import { spawn } from 'node:child_process';
import { assertObjectId, gitEnv, HARDENING } from './git.js';

/** A ref's creation whose git process was started ahead: create() writes it without a fork. */
export interface PreparedRef {
  /**
   * Creates the ref (it must not exist): true when it was made; false when git refused (the ref
   * exists) or the process is gone (never started, died), for the caller to ask git itself, whose
   * answer is the reference.
   */
  create(): Promise<boolean>;
  /** Ends the process having written nothing: no ref is made. */
  cancel(): void;
}

/**
 * Starts `git update-ref --stdin` for one ref now, so that making it later (a spare's branch, when
 * a request claims it) is a line to a running process instead of a child forked then: in the warm
 * server each fork of its large Node process stalls the event loop 20-90 ms under load (docs/
 * benchmarks.md). git applies what it read only at the end of its input, all or nothing: until
 * create() nothing is written, and an end of input with nothing on it (cancel(), or this process
 * dying, which closes the pipe) leaves the repository as it was.
 */
export function prepareCreateRef(cwd: string, ref: string, commit: string, message: string): PreparedRef {
  const line = `create ${ref} ${assertObjectId(commit, 'commit')}\n`;
  const child = spawn('git', [...HARDENING, 'update-ref', '--no-deref', '-m', message, '--stdin'], {
    cwd,
    env: gitEnv(),
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  // A waiting git must not keep the process alive, nor its pipe.
  child.unref();
  const stdin = child.stdin!;
  (stdin as unknown as { unref?: () => void }).unref?.();
  stdin.on('error', () => undefined);
  let alive = true;
  const exited = new Promise<number | undefined>((resolve) => {
    child.once('error', () => {
      alive = false;
      resolve(undefined);
    });
    child.once('exit', (code) => {
      alive = false;
      resolve(code ?? undefined);
    });
  });
  let used = false;
  return {
    async create() {
      if (used || !alive || stdin.destroyed) return false;
      used = true;
      stdin.end(line);
      return (await exited) === 0;
    },
    cancel() {
      if (used) return;
      used = true;
      stdin.end();
    },
  };
}
