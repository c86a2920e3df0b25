import type Docker from 'dockerode';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { MoatError } from '../errors.js';
import { commandWords, frame } from './exec-ahead-script.js';
import { StatusLine, statusMark } from './exec-ahead-status.js';

/**
 * Execs opened ahead on Podman (and any engine of Docker's API): an exec's setup there (create,
 * then start: conmon and `runc exec`) costs ~200-265 ms on this machine kind, most of a pooled
 * `moat run -- true`. So once a pool's spare has started, the engine that made it (the warm
 * server's) opens an exec of WAIT_SCRIPT (exec-ahead-script.ts) into it as the sandbox's user: a shell that says
 * it runs and waits for one command. The claim's first command without a terminal sends its words
 * (the working directory and environment through env(1), as its own exec would set them) as the
 * first frame of stdin, then its stdin framed, and runs at once; its status comes in-band
 * (exec-ahead-status.ts), so the exec's inspect is skipped too. Every other command opens its own
 * exec as before.
 *
 * The command runs as through its own exec: the same container, user (the exec's, given at
 * create), environment (the container's, plus the command's through env), working directory, a
 * session of its own (setsid: Ctrl-C is passed on by signalling its group, service/exec.ts), the
 * same open-files limit (the words carry prlimit where the engine's exec would). The host only
 * writes into the shell; what comes back (output, the status line) is read as untrusted as ever.
 * A waiting exec that ended or said anything more is dropped, and the command opens its own exec.
 *
 * Kept per process, one per container (the warm server gives each request an engine of its own);
 * a waiting stream holds no process open (its socket is unref'd until it is used).
 */

/** Which containers get an exec opened ahead: `spares` (a pool's, the default) or `off` (none). MOAT_PODMAN_EXEC_AHEAD. */
export type PodmanExecAhead = 'spares' | 'off';

/** MOAT_PODMAN_EXEC_AHEAD: unset or `spares` (only a pool's spares get an exec opened ahead), `off` none. */
export function podmanExecAheadMode(value: string | undefined): PodmanExecAhead {
  if (value === undefined || value === '' || value === 'spares') return 'spares';
  if (value === 'off') return 'off';
  throw new MoatError('E_CONFIG_INVALID', `MOAT_PODMAN_EXEC_AHEAD=${value.slice(0, 40)} is neither spares nor off`, {
    hint: "unset it (an exec opened ahead only into the pool's spares), or set off (every command opens its own exec)",
  });
}

/** The hijacked stream of an exec. */
export type ExecStream = NodeJS.ReadWriteStream & { destroy(): void; end(): void };

/** The bytes a waiting exec's stream carries, demultiplexed (stdout, stderr), to whoever listens now. */
export interface WaitingSinks {
  out: (chunk: Buffer) => void;
  err: (chunk: Buffer) => void;
  /** The stream ended (or failed). */
  end: () => void;
}

interface Waiting {
  /** The user the exec runs as: a command as another user opens its own. */
  user: string;
  /** The shell said it runs (false: the exec was refused or ended first). */
  ready: Promise<boolean>;
  opened: Promise<{ exec: Docker.Exec; stream: ExecStream } | undefined>;
  sinks: WaitingSinks;
}

const waiting = new Map<string, Waiting>();

/** How long a command waits for a waiting exec still opening (a spare's start waits for it first, so seldom at all). */
const TAKE_WAIT_MS = 2000;

/** What opens an exec of the waiting shell and hands back its hijacked stream, demultiplexed into `sinks`. */
export type OpenWaitingExec = (sinks: WaitingSinks) => Promise<{ exec: Docker.Exec; stream: ExecStream }>;

/**
 * Opens a waiting exec under `key` (the engine's endpoint and the container) unless one is open
 * or opening; resolves once its shell runs (true) or it failed (false).
 */
export function openAhead(key: string, user: string, open: OpenWaitingExec): Promise<boolean> {
  const existing = waiting.get(key);
  if (existing) return existing.ready;
  let said: (ready: boolean) => void = () => undefined;
  let runs = false;
  const drop = () => {
    said(false);
    if (waiting.get(key) === entry) dropAhead(key);
  };
  const entry: Waiting = {
    user,
    ready: new Promise<boolean>((resolve) => (said = resolve)),
    sinks: {
      out: (chunk) => {
        if (!runs && chunk.toString() === 'R') {
          runs = true;
          said(true);
        } else drop();
      },
      // Anything on stderr, or after the R, means the shell is not waiting any more.
      err: drop,
      end: drop,
    },
    opened: Promise.resolve(undefined),
  };
  entry.opened = open({ out: (c) => entry.sinks.out(c), err: (c) => entry.sinks.err(c), end: () => entry.sinks.end() }).then(
    (opened) => {
      rawSocket(opened.stream)?.unref();
      return opened;
    },
    () => {
      drop();
      return undefined;
    },
  );
  waiting.set(key, entry);
  return entry.ready;
}

/** A waiting exec, now the caller's, for the command of these words ({@link runTaken} sends them). */
export interface TakenExec {
  exec: Docker.Exec;
  stream: ExecStream;
  words: readonly string[];
  sinks: WaitingSinks;
}

/** The waiting exec under `key` for a command as `user` with these words; undefined when none runs (the caller opens its own). */
export async function takeAhead(key: string, user: string, words: readonly string[]): Promise<TakenExec | undefined> {
  const entry = waiting.get(key);
  if (!entry || entry.user !== user) return undefined;
  // Not before its "R": that byte is the waiting shell's, not the command's output. One still
  // opening after {@link TAKE_WAIT_MS} (the engine stuck) is given up: the command opens its own.
  let timer: NodeJS.Timeout | undefined;
  const ready = await Promise.race([entry.ready, new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), TAKE_WAIT_MS)))]);
  clearTimeout(timer);
  if (!ready) dropAhead(key);
  if (!ready || waiting.get(key) !== entry) return undefined;
  waiting.delete(key);
  const opened = await entry.opened;
  if (!opened) return undefined;
  rawSocket(opened.stream)?.ref();
  return { ...opened, words, sinks: entry.sinks };
}

/** The container went (or is going): its waiting exec, if any, is closed. */
export function dropAhead(key: string): void {
  const entry = waiting.get(key);
  if (!entry) return;
  waiting.delete(key);
  void entry.opened.then((opened) => opened?.stream.destroy());
}

/** Whether a waiting exec under `key` is open or opening. */
export function hasAhead(key: string): boolean {
  return waiting.has(key);
}

/**
 * Runs a taken exec's command to its end: stdout and stderr to the caller's streams (the status
 * lines held back), the caller's stdin framed (none: its end at once). Resolves with the in-band
 * status once both lines came with the same number; when the stream ends without them (the shell
 * killed, the container gone), `ownStatus` (the exec's own, as the engine reports it) decides.
 */
export function runTaken(taken: TakenExec, io: { stdin?: Readable; stdout: Writable; stderr: Writable }, ownStatus: () => Promise<number>): Promise<number> {
  const { stream, sinks } = taken;
  const mark = statusMark();
  const lines = { out: new StatusLine(mark), err: new StatusLine(mark) };
  return new Promise<number>((resolve, reject) => {
    let settled = false;
    const finish = (status: Promise<number>) => {
      if (settled) return;
      settled = true;
      io.stdin?.off('data', onData);
      io.stdin?.off('end', onEnd);
      status.then(resolve, reject);
    };
    const check = () => {
      const [a, b] = [lines.out.code, lines.err.code];
      // The same number on both lines; a line that was not one (forged) leaves it to the stream.
      if (typeof a === 'number' && a === b) {
        finish(Promise.resolve(a));
        stream.destroy();
      }
    };
    sinks.out = (chunk) => {
      const data = lines.out.push(chunk);
      if (data.length > 0) io.stdout.write(data);
      check();
    };
    sinks.err = (chunk) => {
      const data = lines.err.push(chunk);
      if (data.length > 0) io.stderr.write(data);
      check();
    };
    sinks.end = () => {
      if (settled) return;
      // Without the status lines, what was held back was output after all.
      const out = lines.out.flush();
      const err = lines.err.flush();
      if (out.length > 0) io.stdout.write(out);
      if (err.length > 0) io.stderr.write(err);
      finish(ownStatus());
    };
    const write = (data: Buffer) => {
      if (!settled) stream.write(data);
    };
    const onData = (chunk: Buffer | string) => write(frame(chunk));
    const onEnd = () => write(frame(Buffer.alloc(0)));
    // The words go only now that this command's sinks listen: none of its output is lost.
    write(frame(commandWords(mark, taken.words)));
    if (io.stdin) {
      io.stdin.on('data', onData);
      io.stdin.on('end', onEnd);
    } else onEnd();
  });
}

function rawSocket(stream: ExecStream): Socket | undefined {
  const socket = stream as unknown as Partial<Socket>;
  return typeof socket.unref === 'function' ? (socket as Socket) : undefined;
}
