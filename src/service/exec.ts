import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { describeExit, exitReason, type ExitReason } from '../domain/exit-reason.js';
import { SANDBOX_PATH, WORKSPACE_DIR } from '../domain/sandbox-spec.js';
import type { TaskRecord } from '../domain/task.js';
import { MoatError } from '../errors.js';
import type { ExecIO } from '../engine/engine.js';
import type { MoatContext } from './context.js';
import { readCounters } from './exit-counters.js';
import { readConfinedFile } from '../workspace/read-confined.js';
import { runningContainer } from './task-container.js';
import { commandThenSnapshot, MAX_BUNDLE_BYTES, syncTask, type SyncResult } from './sync.js';
import { openTaskEgress } from './egress.js';
import { pushSecrets } from './secrets.js';

export interface ExecOptions {
  tty?: boolean;
  /** Bring commits home afterwards (default true). */
  sync?: boolean;
  workdir?: string;
  env?: Record<string, string>;
  /** Snapshot the work in the same exec, right after the command (see commandThenSnapshot); default: when syncing. */
  captureWork?: boolean;
}

export interface ExecResult {
  task: string;
  exitCode: number;
  reason: ExitReason;
  /** Why the command died, in words, when a limit or a signal ended it. */
  explanation?: string;
  sync?: SyncResult;
}

export async function requireRunning(ctx: MoatContext, task: string): Promise<{ record: TaskRecord; id: string }> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const engine = await ctx.engine();
  const id = await runningContainer(engine, record);
  if (!id) {
    throw new MoatError('E_TASK_NOT_RUNNING', `task ${task} has no running container`, { hint: `start a fresh container over its workspace with \`moat reset ${task}\`` });
  }
  return { record, id };
}

/** Runs a command in a task's sandbox, wiring the caller's streams through; the status is the command's. */
export async function execInTask(ctx: MoatContext, task: string, cmd: string[], io: ExecIO, options: ExecOptions = {}): Promise<ExecResult> {
  return (await execCapturingWork(ctx, task, cmd, io, options)).result;
}

/** execInTask, and with captureWork the snapshot the command's exec left (undefined if it could not). */
export async function execCapturingWork(ctx: MoatContext, task: string, cmd: string[], io: ExecIO, options: ExecOptions = {}): Promise<{ result: ExecResult; work?: Buffer }> {
  if (cmd.length === 0) throw new MoatError('E_USAGE', 'no command given', { hint: 'put the command after --, e.g. moat exec my-task -- npm test' });
  const { record, id } = await requireRunning(ctx, task);
  const engine = await ctx.engine();
  // The gateway may have stopped (a crash, a reboot): make sure it serves this task, and hand
  // secret values over again, which it keeps in memory only.
  if (record.network !== 'none') {
    await openTaskEgress(ctx, record);
    await pushSecrets(ctx, record);
  }
  const user = `${record.user.uid}:${record.user.gid}`;
  const before = record.counters ?? { oomKills: 0, pidsMax: 0 };
  const env: Record<string, string> = { ...(options.env ?? {}) };
  if (options.tty) {
    env.TERM = ctx.env.TERM && /^[a-zA-Z0-9._+-]{1,64}$/.test(ctx.env.TERM) ? ctx.env.TERM : 'xterm-256color';
    env.PATH = SANDBOX_PATH;
  }
  const nonce = randomBytes(6).toString('hex');
  // The snapshot goes to the workspace's .git: the host reads it from the mount's source (cheaper
  // than any engine call), and there it is on the task's capped volume and outside the working tree.
  const workName = `.git/moat-work-${nonce}`;
  const workFile = `${WORKSPACE_DIR}/${workName}`;
  // Without a TTY the engine passes no signal on: the command records its pid, and an interrupt
  // of the caller is sent to it (with a TTY, Ctrl-C travels as a keystroke).
  const forward = !options.tty && io.onInterrupt !== undefined;
  const pidFile = forward ? `/tmp/.moat-exec-${nonce}` : undefined;
  let command = cmd;
  const captureWork = options.captureWork ?? options.sync !== false;
  if (captureWork) command = commandThenSnapshot(cmd, record, workFile, pidFile);
  else if (pidFile) command = ['sh', '-c', 'echo $$ > "$0"; exec "$@"', pidFile, ...cmd];
  let stopForwarding: (() => void) | undefined;
  if (pidFile && io.onInterrupt) {
    stopForwarding = io.onInterrupt((signal) => {
      const sink = new PassThrough().resume();
      // The engine starts each exec in a session of its own, so its pid is its process group:
      // the whole group gets the signal, as a terminal's foreground group would.
      void engine.exec(id, { cmd: ['sh', '-c', '/bin/kill -"$1" -- "-$(cat "$0")" 2>/dev/null; rm -f "$0"', pidFile, signal], user }, { stdout: sink, stderr: sink }).catch(() => undefined);
    });
  }
  let exitCode: number;
  try {
    exitCode = await engine.exec(id, { cmd: command, user, workdir: options.workdir ?? WORKSPACE_DIR, env, tty: options.tty }, io);
  } finally {
    stopForwarding?.();
  }

  let oomKilled = false;
  let pidsLimitHit = false;
  if (exitCode !== 0) {
    const after = await readCounters(engine, id, user);
    if (after) {
      oomKilled = after.oomKills > before.oomKills;
      pidsLimitHit = after.pidsMax > before.pidsMax;
      record.counters = after;
      await ctx.store.save(record);
    }
  }
  const reason = exitReason({ exitCode, oomKilled, pidsLimitHit });
  const result: ExecResult = { task, exitCode, reason, explanation: describeExit(reason) };
  const work = captureWork ? await readConfinedFile(ctx.store.workspacePath(record.repoKey, record.name), workName, MAX_BUNDLE_BYTES).catch(() => undefined) : undefined;
  if (options.sync !== false) result.sync = await syncTask(ctx, await ctx.repo(), record, { captured: work });
  return { result, work };
}
