import { taskBranch } from '../domain/task-name.js';
import type { TaskRecord } from '../domain/task.js';
import { MoatError } from '../errors.js';
import type { ExecIO } from '../engine/engine.js';
import { removeTaskWorkspace } from '../workspace/task-workspace.js';
import { assertObjectId, git } from '../workspace/git.js';
import { releaseVolume, unmountVolume } from '../workspace/task-volume.js';
import type { MoatContext } from './context.js';
import { execCapturingWork, type ExecResult } from './exec.js';
import { incomingRef, syncTask, wipRef, type SyncResult } from './sync.js';
import { taskKey } from './pending-sync.js';
import { startContainer, taskSpec, workspaceVolume } from './task-container.js';
import { connectSandbox, stopBridge } from './egress-bridge.js';
import { addGrants, homeOf, taskEnv } from './task-env.js';
import { reseedWorkspace, seedHome, up, type UpOptions } from './up.js';
import { cancelledError, isCancelledError } from './cancel.js';
import { namedTemplate } from '../image/template-image.js';
import { closeTaskPorts } from './ports.js';
import { openTaskEgress, removeTaskEgress, suspendTaskEgress } from './egress.js';
import { pushSecrets } from './secrets.js';
import { startTaskAgent, stopTaskAgent } from './ssh-agent.js';

export interface DownResult {
  task: string;
  removedContainer: boolean;
  sync?: SyncResult;
}

/** Removes the task's container after bringing its commits home; the workspace and branch stay. */
export async function down(ctx: MoatContext, task: string, options: { captured?: Buffer } = {}): Promise<DownResult> {
  const stopping = await bringHome(ctx, task, options);
  await stopping.finish();
  return stopping.result;
}

/** A task whose work is home and whose container is going: `finish` waits for it and stops the rest. */
interface StoppingTask {
  result: DownResult;
  /** Resolves once the container is gone (its removal started as soon as the work was read). */
  removal: Promise<void>;
  finish(): Promise<void>;
}

/** The first half of {@link down}: the sync, with the container's removal started as soon as its work is read. */
async function bringHome(ctx: MoatContext, task: string, options: { captured?: Buffer }): Promise<StoppingTask> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const engine = await ctx.engine();
  // The container goes as soon as its work is read (while the work is brought home): the
  // sandbox holds nothing worth a graceful stop once the bundle is out.
  const containerId = record.containerId;
  let removal: Promise<void> | undefined;
  const remove = () => (removal ??= containerId ? engine.removeContainer(containerId) : Promise.resolve());
  // Started, not waited for, once the work is read: the sync brings it home meanwhile, and only
  // finish (or the warm server, after the caller has its status) waits for the engine's removal.
  const startRemoval = () => {
    remove().catch(() => undefined);
    return Promise.resolve();
  };
  let sync: SyncResult;
  try {
    sync = await syncTask(ctx, repo, record, { captured: options.captured, afterRead: startRemoval });
  } catch (error) {
    // A removal already started ends before the error goes on, as it did inside the sync.
    await removal?.catch(() => undefined);
    throw error;
  }
  // When the work could not be read, the container goes after the attempt all the same.
  const started = remove();
  // Awaited by finish (or by the warm server's removal): not a rejection nobody hears meanwhile.
  started.catch(() => undefined);
  const finish = async () => {
    await started;
    delete record.containerId;
    record.state = 'stopped';
    await ctx.store.save(record);
    await stopTaskAgent(ctx, record);
    await stopBridge(ctx, record);
    await suspendTaskEgress(ctx, record);
    await closeTaskPorts(ctx, record);
    // Nothing uses the task's volume until the next container: no mount lingers on the host.
    await unmountVolume(ctx.store.taskDir(record.repoKey, task));
    // The same for an engine-made cap: its loop device is detached, its image (the work) stays.
    if (record.disk === 'engine') await engine.parkVolume(workspaceVolume(record));
  };
  return { result: { task, removedContainer: containerId !== undefined, sync }, removal: started, finish };
}

/** A fresh container over the same workspace: the answer to "the sandbox is in a bad state". */
export async function reset(ctx: MoatContext, task: string): Promise<TaskRecord> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const engine = await ctx.engine();
  await syncTask(ctx, repo, record).catch(() => undefined);
  if (record.containerId) await engine.removeContainer(record.containerId);
  const config = await ctx.effectiveConfig(repo);
  if (record.network !== 'none') {
    await openTaskEgress(ctx, record);
    await pushSecrets(ctx, record);
    await startTaskAgent(ctx, record);
  }
  const env = { ...taskEnv(config, ctx.env), ...(record.templateEnv ?? {}) };
  for (const entry of record.flagEnv ?? []) {
    const at = entry.indexOf('=');
    const value = at < 0 ? ctx.env[entry] : entry.slice(at + 1);
    if (value !== undefined) env[at < 0 ? entry : entry.slice(0, at)] = value;
  }
  addGrants(env, {
    network: record.network,
    egressNetwork: config.egressNetwork,
    secrets: record.secrets,
    rules: record.egress?.rules,
    sshKeys: record.sshKeys,
  });
  const spec = taskSpec(ctx, record, env);
  // A container of the same name left by a crash would block the new one.
  await engine.removeContainer(spec.name);
  record.containerId = await startContainer(engine, spec);
  // A workspace that went with the old sandbox (a pod's) comes back from what sync brought home.
  if (record.workspace === 'volume' && !engine.capabilities.workspaceOutlivesSandbox) await reseedWorkspace(ctx, engine, record.containerId, record);
  await connectSandbox(ctx, engine, record.containerId, record);
  const template = await namedTemplate(record.template, config.templateDirs, { orBuiltIn: true });
  await seedHome(engine, record.containerId, `${record.user.uid}:${record.user.gid}`, homeOf(template, record.sshKeys), record.secrets);
  record.state = 'running';
  delete record.counters;
  await ctx.store.save(record);
  return record;
}

export interface RemoveResult {
  task: string;
  branchDeleted: boolean;
  unmergedCommits: number;
}

/**
 * Discards a task: container, workspace, record and branch. Refuses, unless forced, while the
 * branch has commits that are not in the user's current branch, and when the task's latest work
 * could not be brought home first: either would be lost.
 */
export async function remove(ctx: MoatContext, task: string, options: { force?: boolean } = {}): Promise<RemoveResult> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const engine = await ctx.engine();
  // Commits the agent made since the last sync count too: read them (from a helper if need be).
  // Forced, everything is discarded anyway, so there is nothing to read.
  if (!options.force) await finalSync(task, () => syncTask(ctx, repo, record));
  const unmerged = await unmergedCommits(ctx, record);
  if (unmerged > 0 && !options.force) {
    throw new MoatError('E_CONFIRM', `task ${task} has ${unmerged} commit(s) not merged into your current branch`, {
      hint: `review them (moat diff ${task}), merge them (moat merge ${task}), or discard them with moat rm --force ${task}`,
      details: { unmergedCommits: unmerged },
    });
  }
  if (record.containerId) await engine.removeContainer(record.containerId);
  for (const container of await engine.listContainers({ 'moat.task': task, 'moat.repo': record.repoKey, 'moat.home': ctx.store.homeKey })) {
    await engine.removeContainer(container.id);
  }
  await removeTaskWorkspace(ctx.store.workspacePath(record.repoKey, task));
  await releaseVolume(ctx.store.taskDir(record.repoKey, task));
  if (record.workspace === 'volume') await engine.removeVolume(workspaceVolume(record));
  await stopTaskAgent(ctx, record);
  await stopBridge(ctx, record);
  await removeTaskEgress(ctx, record);
  await closeTaskPorts(ctx, record);
  const branchDeleted = (await repo.refValue(`refs/heads/${taskBranch(task)}`)) !== undefined;
  await repo.deleteRefs(taskRefs(task));
  await ctx.store.remove(record.repoKey, task);
  return { task, branchDeleted, unmergedCommits: unmerged };
}

/**
 * The sync before a removal. When it fails, or when the work could only be parked (the branch was
 * moved), the workspace is the only complete copy of the task's work: nothing is removed.
 */
async function finalSync(task: string, sync: () => Promise<SyncResult>): Promise<void> {
  let cause: string | undefined;
  try {
    const result = await sync();
    if (result.warning) cause = result.warning;
  } catch (error) {
    cause = (error as Error).message;
  }
  if (cause === undefined) return;
  throw new MoatError('E_SYNC_FAILED', `task ${task} was not removed: its latest work could not be brought home first (${cause})`, {
    hint: `fix the cause and run moat rm ${task} again (moat sync ${task} shows it), or use --force to discard anyway: moat rm --force ${task}`,
    details: { cause },
  });
}

async function unmergedCommits(ctx: MoatContext, record: TaskRecord): Promise<number> {
  const repo = await ctx.repo();
  const tip = await repo.refValue(`refs/heads/${record.branch}`);
  if (!tip || tip === record.baseCommit) return 0;
  const head = await repo.refValue('HEAD');
  if (head && (await repo.isAncestor(tip, head))) return 0;
  return repo.countCommits(head ?? record.baseCommit, tip);
}

export interface RunOptions extends UpOptions {
  tty?: boolean;
  /** Keep the task (stopped, with its branch) even when it left no work. */
  keep?: boolean;
  /** Remove the task if it left no work: the default, accepted so that `--rm` keeps working. */
  rm?: boolean;
  /** Told when the command starts and ends: the caller's Ctrl-C then mean something else. */
  onCommand?: (phase: 'started' | 'ended') => void;
}

export interface RunResult extends ExecResult {
  branch: string;
  /** The task left commits or uncommitted changes (false too when its work could not be read). */
  work: boolean;
  /** The task was removed because it left no work (no commit, no uncommitted change). */
  removed: boolean;
  /** Why a task whose work could not be judged was kept (it is never removed then). */
  keptBecause?: string;
}

/**
 * up + exec + down. A task that left no commits and no uncommitted work is removed afterwards,
 * like `docker run --rm`, unless `keep`; one with work is always kept (branch and commits), so
 * no run loses work and no run leaves an empty task behind. A cancel during the up rolls it back.
 */
export async function run(ctx: MoatContext, cmd: string[], io: ExecIO, options: RunOptions = {}): Promise<RunResult> {
  if (options.keep && options.rm)
    throw new MoatError('E_USAGE', '--rm and --keep contradict each other', { hint: 'a task that left no work is removed by default; --keep keeps it' });
  // Checked before anything is made: the exec would refuse it only after the up.
  if (cmd.length === 0) throw new MoatError('E_USAGE', 'no command given', { hint: 'put the command after --, e.g. moat run -- npm test' });
  const { signal } = options;
  const record = await up(ctx, options).catch((error: unknown) => {
    throw signal && isCancelledError(error) ? cancelledError(signal, 'run', (error as MoatError).details?.cleanedUp === true) : error;
  });
  if (signal?.aborted) {
    // Cancelled after the up was done, before the command started: nothing ran, nothing to keep.
    const clean = await remove(ctx, record.name, { force: true }).then(
      () => true,
      () => false,
    );
    throw cancelledError(signal, 'run', clean);
  }
  let result: ExecResult | undefined;
  let captured: Buffer | undefined;
  let stopping: StoppingTask | undefined;
  try {
    options.onCommand?.('started');
    ({ result, work: captured } = await execCapturingWork(ctx, record.name, cmd, io, { tty: options.tty, sync: false, captureWork: true }));
  } finally {
    options.onCommand?.('ended');
    stopping = await bringHome(ctx, record.name, { captured });
    if (result) result.sync = stopping.result.sync;
    // The command failed to run: everything is stopped before its error goes on.
    else await stopping.finish();
  }
  const sync = result.sync;
  // Removing deletes the workspace and the branch, so it needs a positive "there is nothing": a
  // sync that warned (work unreadable, or parked because the branch moved), a commit count that
  // could not be read, or a snapshot of uncommitted work that did not finish (a full /tmp, a file
  // git cannot read) all keep the task whole. "Nothing" is the sandbox's word: it could lie, but
  // a lie only loses the sandbox's own work, which it could as well delete itself (rm -rf, git
  // reset); what this guards against is an honest snapshot that failed quietly. The host does
  // not walk the workspace itself: that tree is the sandbox's, links and all.
  const unread =
    sync === undefined
      ? 'its work could not be read'
      : sync.warning
        ? 'its work could not be read'
        : sync.commitsUnknown
          ? 'its commits could not be counted'
          : !sync.snapshotTaken
            ? 'its uncommitted work could not be read (the snapshot failed)'
            : undefined;
  // A failed judgement keeps the task, stopped as down leaves it.
  const work =
    unread === undefined &&
    (sync!.commits > 0 ||
      (sync!.skippedLarge ?? 0) > 0 ||
      !(await workIsEmpty(ctx, record.baseCommit, sync!.wip).catch(async (error: unknown) => {
        await stopping.finish();
        throw error;
      })));
  const removed = unread === undefined && !work && !options.keep;
  if (removed && ctx.syncs) await removeAfterStatus(ctx, record, stopping);
  else {
    await stopping.finish();
    if (removed) await remove(ctx, record.name, { force: true });
  }
  return { ...result, branch: record.branch, work, removed, ...(unread && !work ? { keptBecause: unread } : {}) };
}

/**
 * On the warm server, a task that left no work is removed after the caller has its status: its
 * work was read and judged (there is none), so only the engine's removal of the container
 * (Podman's takes 0.3-0.5 s) and the host's cleanup are left. Until then the record says
 * `removing`, owned by this process: `gc` collects it if the server dies first, and the server's
 * next commands wait for the removal (PendingSyncs), so none sees the task half-removed.
 */
async function removeAfterStatus(ctx: MoatContext, record: TaskRecord, stopping: StoppingTask): Promise<void> {
  // Its refs go before the status all the same (the work was judged empty: the branch is at its
  // base), so that the branch the user lists right after `run` returns is not still there.
  const repo = await ctx.repo();
  await repo.deleteRefs(taskRefs(record.name));
  record.state = 'removing';
  record.creatorPid = process.pid;
  await ctx.store.save(record);
  ctx.syncs!.add(taskKey(record), ctx.statusSent ?? Promise.resolve(), async () => {
    await stopping.removal.catch(() => undefined);
    await remove(ctx, record.name, { force: true }).catch(async (error: unknown) => {
      // Nobody is left to tell: the record is handed to `gc` (no live owner), which removes the rest.
      const current = await ctx.store.get(record.repoKey, record.name);
      if (current) await ctx.store.save({ ...current, creatorPid: undefined });
      throw error;
    });
  });
}

/** The refs a task has in the user's repository: its branch, its parked work, its incoming commits. */
function taskRefs(task: string): string[] {
  return [`refs/heads/${taskBranch(task)}`, wipRef(task), incomingRef(task)];
}

/** Does the snapshot of uncommitted work hold anything beyond the base? */
async function workIsEmpty(ctx: MoatContext, base: string, wip: string | undefined): Promise<boolean> {
  if (!wip) return true;
  const repo = await ctx.repo();
  const changed = await git(['diff', '--quiet', assertObjectId(base, 'base'), assertObjectId(wip, 'wip')], { cwd: repo.path, allowExit: [1] });
  return changed.exitCode === 0;
}
