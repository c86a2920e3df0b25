import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { describeExit, exitReason, type ExitReason } from '../domain/exit-reason.js';
import { SANDBOX_PATH, WORKSPACE_DIR } from '../domain/sandbox-spec.js';
import { MoatError } from '../errors.js';
import type { ContainerEngine, ExecIO } from '../engine/engine.js';
import type { MoatContext } from './context.js';
import { readCounters } from './exit-counters.js';
import { readConfinedFile } from '../workspace/read-confined.js';
import { commandThenSnapshot, MAX_BUNDLE_BYTES, settlePendingSync, syncTask, type SyncResult } from './sync.js';
import { clearMarkers, killPoint, markDone, markRunning, taskKey } from './pending-sync.js';

import { openTaskEgress } from './egress.js';
import { pushSecrets } from './secrets.js';
import { ensureBridge } from './egress-bridge.js';

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

/** Runs a command in a task's sandbox, wiring the caller's streams through; the status is the command's. */
export async function execInTask(ctx: MoatContext, task: string, cmd: string[], io: ExecIO, options: ExecOptions = {}): Promise<ExecResult> {
  return (await execCapturingWork(ctx, task, cmd, io, options)).result;
}

/** execInTask, and with captureWork the snapshot the command's exec left (undefined if it could not). */
export async function execCapturingWork(
  ctx: MoatContext,
  task: string,
  cmd: string[],
  io: ExecIO,
  options: ExecOptions = {},
): Promise<{ result: ExecResult; work?: Buffer }> {
  if (cmd.length === 0) throw new MoatError('E_USAGE', 'no command given', { hint: 'put the command after --, e.g. moat exec my-task -- npm test' });
  const repo = await ctx.repo();
  const syncing = options.sync !== false;
  // The task's earlier work comes home before this command runs (pending-sync.ts).
  const record = syncing ? await settlePendingSync(ctx, repo, await ctx.store.require(repo.key, task)) : await ctx.store.require(repo.key, task);
  const id = record.containerId;
  if (!id) throw notRunning(task);
  const engine = await ctx.engine();
  // The gateway may have stopped (a crash, a reboot): make sure it serves this task, and hand
  // secret values over again, which it keeps in memory only.
  if (record.network !== 'none') {
    await openTaskEgress(ctx, record);
    await pushSecrets(ctx, record);
    await ensureBridge(ctx, record);
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
  // The snapshot file is read from the workspace's host folder: an engine volume has none, and the
  // sync reads the work through exec instead.
  const captureWork = (options.captureWork ?? syncing) && record.workspace !== 'volume';
  // On the warm server the status goes first: the snapshot runs on in the sandbox after the
  // command's exec has ended, and its work comes home after the caller has the status.
  const deferred = syncing && captureWork && ctx.syncs !== undefined;
  let command = cmd;
  if (captureWork) command = commandThenSnapshot(cmd, record, workFile, pidFile, { background: deferred });
  else if (pidFile) command = ['sh', '-c', 'echo $$ > "$0"; exec "$@"', pidFile, ...cmd];
  const marker = syncing ? await markRunning(ctx.store, record) : undefined;
  let stopForwarding: (() => void) | undefined;
  if (pidFile && io.onInterrupt) {
    stopForwarding = io.onInterrupt((signal) => {
      const sink = new PassThrough().resume();
      // The engine starts each exec in a session of its own, so its pid is its process group:
      // the whole group gets the signal, as a terminal's foreground group would.
      void engine
        .exec(id, { cmd: ['sh', '-c', '/bin/kill -"$1" -- "-$(cat "$0")" 2>/dev/null; rm -f "$0"', pidFile, signal], user }, { stdout: sink, stderr: sink })
        .catch(() => undefined);
    });
  }
  let exitCode: number;
  try {
    // An exec into a gVisor sandbox that died never returns: it ends with the container (137).
    const execIO = record.isolation === 'gvisor' ? { ...io, endWithContainer: true } : io;
    exitCode = await engine.exec(id, { cmd: command, user, workdir: options.workdir ?? WORKSPACE_DIR, env, tty: options.tty }, execIO);
  } catch (error) {
    // The container is gone or stopped (the engine says so instead of a separate inspect first):
    // nothing ran, so there is nothing to bring home. Any other failure may have come after the
    // command ran: its work is left for the next command to bring home.
    const status = (error as { cause?: { statusCode?: number } }).cause?.statusCode;
    if (status === 404 || status === 409) {
      if (marker) await clearMarkers(ctx.store, record, [marker]);
      throw notRunning(task);
    }
    if (marker) await markDone(ctx.store, record, marker);
    throw error;
  } finally {
    stopForwarding?.();
  }
  killPoint(ctx.env, 'exec-after-command');

  let oomKilled = false;
  let pidsLimitHit = false;
  if (exitCode !== 0) {
    const after = await readCounters(engine, id, user);
    if (after) {
      oomKilled = after.oomKills > before.oomKills;
      pidsLimitHit = after.pidsMax > before.pidsMax;
      // Saved on the record as it is now: a sync under way may have moved syncedTip on.
      const current = (await ctx.store.get(record.repoKey, record.name)) ?? record;
      current.counters = record.counters = after;
      await ctx.store.save(current);
    }
  }
  const reason = exitReason({ exitCode, oomKilled, pidsLimitHit });
  const result: ExecResult = { task, exitCode, reason, explanation: describeExit(reason) };
  const workspace = ctx.store.workspacePath(record.repoKey, record.name);
  if (deferred && ctx.syncs) {
    ctx.syncs.add(taskKey(record), ctx.statusSent ?? Promise.resolve(), async () => {
      killPoint(ctx.env, 'exec-after-status');
      const work = await waitForWork(engine, id, workspace, workName);
      // As saved by the syncs before this one (an exec that ran alongside may have brought work home).
      const current = await ctx.store.get(record.repoKey, record.name);
      // Removed meanwhile (rm --force from another process): nothing to bring home to.
      if (!current) return;
      await syncTask(ctx, repo, current, { captured: work, markers: marker ? [marker] : [], background: true }).catch(async (error: unknown) => {
        // The next command on the task tries again (its owner, this process, lives on).
        if (marker) await markDone(ctx.store, record, marker);
        throw error;
      });
    });
    return { result };
  }
  const work = captureWork ? await readConfinedFile(workspace, workName, MAX_BUNDLE_BYTES).catch(() => undefined) : undefined;
  if (syncing) {
    result.sync = await syncTask(ctx, repo, record, { captured: work, markers: marker ? [marker] : [] }).catch(async (error: unknown) => {
      if (marker) await markDone(ctx.store, record, marker);
      throw error;
    });
  }
  return { result, work };
}

function notRunning(task: string): MoatError {
  return new MoatError('E_TASK_NOT_RUNNING', `task ${task} has no running container`, {
    hint: `start a fresh container over its workspace with \`moat reset ${task}\``,
  });
}

/**
 * The snapshot a deferred exec left running in the sandbox: polled for on the host (no engine
 * call while it comes). Undefined when it does not come (the container died, the snapshot was
 * killed or failed): the sync then reads the workspace afresh, as after a crash.
 */
async function waitForWork(engine: ContainerEngine, id: string, workspace: string, workName: string): Promise<Buffer | undefined> {
  // No snapshot was started (the shell could not fork): nothing to wait for.
  if (!(await readConfinedFile(workspace, `${workName}.forked`, 0).catch(() => undefined))) return undefined;
  const started = Date.now();
  let lastCheck = started;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    const work = await readConfinedFile(workspace, workName, MAX_BUNDLE_BYTES).catch(() => undefined);
    if (work) return work.length > 0 ? work : undefined;
    const now = Date.now();
    if (now - started > WORK_WAIT_MS) return undefined;
    if (now - lastCheck > 1000) {
      lastCheck = now;
      if (!(await engine.inspectContainer(id).catch(() => undefined))?.running) return undefined;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** How long a deferred sync waits for the sandbox's snapshot before reading the workspace itself. */
const WORK_WAIT_MS = 60_000;
