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
import { startContainer, taskSpec } from './task-container.js';
import { taskEnv } from './task-env.js';
import { seedHome, up, type UpOptions } from './up.js';
import { BUILTIN_TEMPLATES_DIR, templateRoot } from '../image/template-image.js';
import { loadTemplate } from '../image/template.js';
import { needsSandboxTrust, openTaskEgress, removeTaskEgress, SANDBOX_CA_ENV, suspendTaskEgress } from './egress.js';
import { pushSecrets } from './secrets.js';
import { SANDBOX_SSH_AUTH_SOCK, SANDBOX_SSH_CONFIG, startTaskAgent, stopTaskAgent } from './ssh-agent.js';

export interface DownResult {
  task: string;
  removedContainer: boolean;
  sync?: SyncResult;
}

/** Removes the task's container after bringing its commits home; the workspace and branch stay. */
export async function down(ctx: MoatContext, task: string, options: { captured?: Buffer } = {}): Promise<DownResult> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const engine = await ctx.engine();
  // The container goes as soon as its work is read (while the work is brought home): the
  // sandbox holds nothing worth a graceful stop once the bundle is out.
  const containerId = record.containerId;
  let removal: Promise<void> | undefined;
  const remove = () => (removal ??= containerId ? engine.removeContainer(containerId) : Promise.resolve());
  // When the work could not be read, the container goes after the attempt all the same.
  const sync = await syncTask(ctx, repo, record, { captured: options.captured, afterRead: remove });
  await remove();
  const removed = containerId !== undefined;
  delete record.containerId;
  record.state = 'stopped';
  await ctx.store.save(record);
  await stopTaskAgent(ctx, record);
  await suspendTaskEgress(ctx, record);
  // Nothing uses the task's volume until the next container: no mount lingers on the host.
  await unmountVolume(ctx.store.taskDir(record.repoKey, task));
  return { task, removedContainer: removed, sync };
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
  for (const secret of record.secrets ?? []) env[secret.name] = secret.placeholder;
  if (record.network !== 'none' && needsSandboxTrust(config.egressNetwork, record.secrets)) Object.assign(env, SANDBOX_CA_ENV);
  if (record.sshKeys?.length) env.SSH_AUTH_SOCK = SANDBOX_SSH_AUTH_SOCK;
  const spec = taskSpec(ctx, record, env);
  // A container of the same name left by a crash would block the new one.
  await engine.removeContainer(spec.name);
  record.containerId = await startContainer(engine, spec);
  const template = await loadTemplate(await templateRoot(record.template, config.templateDirs).catch(() => BUILTIN_TEMPLATES_DIR), record.template);
  await seedHome(engine, record.containerId, `${record.user.uid}:${record.user.gid}`, record.sshKeys ? { ...template, home: { ...(template.home ?? {}), '.ssh/config': SANDBOX_SSH_CONFIG } } : template);
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
 * Discards a task: container, workspace, record and branch. Refuses while the branch has commits
 * that are not in the user's current branch, unless forced: those commits would be lost.
 */
export async function remove(ctx: MoatContext, task: string, options: { force?: boolean } = {}): Promise<RemoveResult> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const engine = await ctx.engine();
  // Commits the agent made since the last sync count too: read them (from a helper if need be).
  // Forced, everything is discarded anyway, so there is nothing to read.
  if (!options.force) await syncTask(ctx, repo, record).catch(() => undefined);
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
  await stopTaskAgent(ctx, record);
  await removeTaskEgress(ctx, record);
  const branchRef = `refs/heads/${taskBranch(task)}`;
  const branchDeleted = (await repo.refValue(branchRef)) !== undefined;
  await repo.deleteRefs([branchRef, wipRef(task), incomingRef(task)]);
  await ctx.store.remove(record.repoKey, task);
  return { task, branchDeleted, unmergedCommits: unmerged };
}

async function unmergedCommits(ctx: MoatContext, record: TaskRecord): Promise<number> {
  const repo = await ctx.repo();
  const tip = await repo.refValue(`refs/heads/${record.branch}`);
  if (!tip || tip === record.baseCommit) return 0;
  const head = await repo.refValue('HEAD');
  if (head && (await repo.isAncestor(tip, head))) return 0;
  return repo.countCommits(head ?? record.baseCommit, tip);
}

export interface RunResult extends ExecResult {
  branch: string;
  /** With `rm`: the task was removed because it left nothing behind. */
  removed: boolean;
}

/**
 * up + exec + down: the branch and its commits stay. With `rm`, a task that left no commits and no
 * uncommitted work is removed afterwards, like `docker run --rm`; one with work is always kept.
 */
export async function run(ctx: MoatContext, cmd: string[], io: ExecIO, options: UpOptions & { tty?: boolean; rm?: boolean } = {}): Promise<RunResult> {
  const record = await up(ctx, options);
  let result: ExecResult | undefined;
  let work: Buffer | undefined;
  try {
    ({ result, work } = await execCapturingWork(ctx, record.name, cmd, io, { tty: options.tty, sync: false, captureWork: true }));
  } finally {
    const downResult = await down(ctx, record.name, { captured: work });
    if (result) result.sync = downResult.sync;
  }
  const sync = result.sync;
  const nothingLeft = sync !== undefined && !sync.warning && sync.commits === 0 && (await workIsEmpty(ctx, record.baseCommit, sync.wip));
  let removed = false;
  if (options.rm && nothingLeft) {
    await remove(ctx, record.name, { force: true });
    removed = true;
  }
  return { ...result, branch: record.branch, removed };
}

/** Does the snapshot of uncommitted work hold anything beyond the base? */
async function workIsEmpty(ctx: MoatContext, base: string, wip: string | undefined): Promise<boolean> {
  if (!wip) return true;
  const repo = await ctx.repo();
  const changed = await git(['diff', '--quiet', assertObjectId(base, 'base'), assertObjectId(wip, 'wip')], { cwd: repo.path, allowExit: [1] });
  return changed.exitCode === 0;
}
