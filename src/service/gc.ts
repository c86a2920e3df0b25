import { LABEL } from '../domain/labels.js';
import { closeTaskPorts } from './ports.js';
import { taskBranch } from '../domain/task-name.js';
import type { TaskRecord } from '../domain/task.js';
import { UserRepository } from '../workspace/user-repo.js';
import { mountedVolumes, releaseVolume } from '../workspace/task-volume.js';
import type { MoatContext } from './context.js';
import { claimSpare, poolRef } from './task-pool.js';
import { workspaceVolume } from './task-container.js';
import { processAlive } from '../state/process-alive.js';
import { DEFAULT_BASE_IMAGE } from '../config/effective.js';

export interface GcResult {
  removedContainers: string[];
  removedVolumes: string[];
  /** Tasks whose creation (moat killed during `up`) or removal (a warm server killed after a `run`) was interrupted, removed whole. */
  removedTasks: string[];
  /** With `all`: spare tasks live warm servers had made ahead (they make another when next asked). */
  removedSpares: string[];
}

/**
 * Removes what a crash left: resources labelled with this moat home whose task no longer exists,
 * helper containers, and tasks whose `up` died half-way; with `all`, also the spare tasks live
 * warm servers made ahead. A task's branch is deleted only while it still points at its base, so
 * no commit is ever lost to gc.
 */
export async function gc(ctx: MoatContext, options: { all?: boolean } = {}): Promise<GcResult> {
  const engine = await ctx.engine();
  const result: GcResult = { removedContainers: [], removedVolumes: [], removedTasks: [], removedSpares: [] };
  const records = await ctx.store.listAll({ pooled: true });

  // Half-made tasks, half-removed ones (a `run` without work), and pooled ones whose server is gone.
  const interrupted = records.filter((r) => (r.state === 'creating' || r.state === 'removing' || r.state === 'pooled') && !processAlive(r.creatorPid));
  for (const record of interrupted) {
    await discardTask(ctx, record);
    if (record.state !== 'pooled') result.removedTasks.push(record.name);
  }
  const removed = new Set(interrupted);
  if (options.all) {
    for (const record of records.filter((r) => r.state === 'pooled' && !removed.has(r))) {
      const spare = await finishedSpare(ctx, record);
      // A request may take it between that read and the removal: the claim decides (task-pool.ts).
      if (!spare || !(await claimSpare(ctx.store.taskDir(spare.repoKey, spare.name)).catch(() => false))) continue;
      await discardTask(ctx, spare);
      removed.add(record);
      result.removedSpares.push(record.name);
    }
  }
  const live = new Map(records.filter((r) => !removed.has(r)).map((r) => [`${r.repoKey}/${r.name}`, r]));

  const owned = { [LABEL.home]: ctx.store.homeKey };
  for (const container of await engine.listContainers(owned)) {
    const record = live.get(`${container.labels[LABEL.repo]}/${container.labels[LABEL.task]}`);
    const orphan =
      !record ||
      container.labels[LABEL.role] === 'helper' ||
      (container.labels[LABEL.role] === 'task' && record.containerId !== container.id && record.state !== 'creating' && record.state !== 'pooled');
    if (orphan) {
      await engine.removeContainer(container.id);
      result.removedContainers.push(container.name);
    }
  }
  // Capped volumes still mounted for tasks whose record is gone.
  for (const taskDir of await mountedVolumes(ctx.store.reposDir)) {
    const task = ctx.store.taskOfDir(taskDir);
    if (task && !live.has(`${task.repoKey}/${task.name}`)) await releaseVolume(taskDir);
  }
  // After the volumes above: a folder a killed removal left aside may still hold a mounted one.
  await ctx.store.collectLeftovers();
  for (const volume of await engine.listVolumes(owned)) {
    if (!live.has(`${volume.labels[LABEL.repo]}/${volume.labels[LABEL.task]}`)) {
      await engine.removeVolume(volume.name);
      result.removedVolumes.push(volume.name);
    }
  }
  return result;
}

/**
 * A spare task as it is now, once its server has finished making it (a task half-made by a live
 * server is its server's to finish or roll back); undefined when it was taken meanwhile: it is
 * somebody's task then, and gc leaves it alone. The server tolerates its spare going away: taking
 * it finds no record, and the request makes a task from scratch.
 */
async function finishedSpare(ctx: MoatContext, record: TaskRecord): Promise<TaskRecord | undefined> {
  for (let waited = 0; ; waited += 200) {
    const now = await ctx.store.get(record.repoKey, record.name).catch(() => undefined);
    if (!now || now.state !== 'pooled') return undefined;
    if (now.containerId || !processAlive(now.creatorPid)) return now;
    if (waited >= SPARE_WAIT_MS) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
const SPARE_WAIT_MS = 120_000;

/** Removes a task that has no work yet: a half-made one, or a pooled one nobody took. */
export async function discardTask(ctx: MoatContext, record: TaskRecord): Promise<void> {
  const engine = await ctx.engine();
  for (const container of await engine.listContainers({ [LABEL.home]: ctx.store.homeKey, [LABEL.repo]: record.repoKey, [LABEL.task]: record.name })) {
    await engine.removeContainer(container.id);
  }
  const repo = await UserRepository.open(record.repoPath).catch(() => undefined);
  // Only while the branch is still at its base: a branch with commits is never thrown away.
  if (repo) await repo.deleteRef(`refs/heads/${taskBranch(record.name)}`, record.baseCommit);
  if (repo) await repo.deleteRef(poolRef(record.name));
  await releaseVolume(ctx.store.taskDir(record.repoKey, record.name));
  await closeTaskPorts(ctx, record);
  if (record.workspace === 'volume')
    await engine.removeVolume(workspaceVolume(record), record.disk === 'engine' ? { helperImage: await diskHelperImage(ctx) } : undefined);
  await ctx.store.remove(record.repoKey, record.name);
}

/**
 * The image a capped disk's helper runs from when gc removes one: the user's base image, from the
 * user's own config (never a repository's, and never a task's image: a repository chooses those),
 * as `up` chose it when it attached the disk.
 */
async function diskHelperImage(ctx: MoatContext): Promise<string> {
  const user = await ctx.userConfig().catch(() => ({ baseImage: undefined }));
  return user.baseImage ?? DEFAULT_BASE_IMAGE;
}
