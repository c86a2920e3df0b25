import { enforcementText, type CgroupLimit } from '../domain/limit-enforcement.js';
import type { LogOptions, NodeHealth } from '../engine/engine.js';
import type { Writable } from 'node:stream';
import type { Limits } from '../domain/limits.js';
import type { TaskRecord, TaskState } from '../domain/task.js';
import { UserRepository } from '../workspace/user-repo.js';
import { MoatError } from '../errors.js';
import type { MoatContext } from './context.js';
import { egressCounts } from './egress.js';
import { listPorts, type OpenPort } from './ports.js';
import { settlePendingSync } from './sync.js';
import { IDLE_EXIT } from '../domain/sandbox-spec.js';
import { formatSize } from '../domain/size.js';
import { diskUncappedWhy } from '../workspace/task-volume.js';

export interface TaskSummary {
  name: string;
  state: TaskState;
  branch: string;
  image: string;
  template: string;
  createdAt: string;
  ageSeconds: number;
  /** The limits that hold: diskBytes only when the workspace's cap is enforced (see `disk`). */
  limits: Omit<Limits, 'diskBytes'> & { diskBytes?: number };
  /** How the workspace's size is held, or "NOT capped" and why: never a cap that is not enforced. */
  disk: string;
  /** Each cgroup limit: "enforced", or "NOT enforced (…)" where the engine cannot hold it (rootless Podman on cgroup v1). */
  limitEnforcement: Record<CgroupLimit, string>;
  network: string;
  /** Commits on the task branch (in the user's repository: what moat brought home) beyond its base. */
  commits: number;
  /** Made ahead by a warm server for the next `run`/`up` (`ls -a` only): nobody's task yet, `gc --all` removes it. */
  spare?: true;
  /** Why the container is no longer running, when it stopped by itself. */
  stopReason?: string;
  /** Outbound attempts through the gateway, from the audit log. */
  egress: { allowed: number; denied: number };
  repoPath: string;
  containerId?: string;
  /** Sandbox ports open on the host (`moat port`). */
  ports: OpenPort[];
  /** runc, or gvisor: gVisor's kernel between the task and the host (limits.pids then held by it, see `moat doctor`). */
  isolation: 'runc' | 'gvisor';
  /**
   * On a cluster: the node the task's pod was placed on, and whether it takes pods (Ready, as
   * `moat doctor`'s nodes check reads it); `ready` absent when the nodes could not be listed.
   */
  node?: { name: string; ready?: boolean; why?: string };
}

/**
 * Tasks of the current repository (or, with `all`, of every repository, and the spare tasks warm
 * servers made ahead), with the state the engine reports.
 */
export async function listTasks(ctx: MoatContext, options: { all?: boolean } = {}): Promise<TaskSummary[]> {
  const records = options.all ? await ctx.store.listAll({ pooled: true }) : await ctx.store.list((await ctx.repo()).key);
  const engine = await ctx.engine();
  const now = Date.now();
  // Each task's commits are counted in its own repository (with `all`, not the one moat runs in).
  const repos = new Map<string, Promise<UserRepository | undefined>>();
  const repoOf = (record: TaskRecord) => {
    if (!options.all) return ctx.repo();
    if (!repos.has(record.repoPath))
      repos.set(
        record.repoPath,
        UserRepository.open(record.repoPath).catch(() => undefined),
      );
    return repos.get(record.repoPath)!;
  };
  // Read once for every task on a node: the engine's nodes, as the doctor reads them.
  let nodes: Promise<NodeHealth[] | undefined> | undefined;
  const nodeOf = async (name: string): Promise<TaskSummary['node']> => {
    nodes ??= engine.nodes?.().catch(() => undefined) ?? Promise.resolve(undefined);
    const health = (await nodes)?.find((node) => node.name === name);
    return health ? { name, ready: health.ready, ...(health.why ? { why: health.why } : {}) } : { name };
  };
  return Promise.all(
    records.map(async (listed): Promise<TaskSummary> => {
      let record = listed;
      let state: TaskState = record.state;
      let stopReason: string | undefined;
      let node: TaskSummary['node'];
      if (record.containerId) {
        const info = await engine.inspectContainer(record.containerId);
        if (info?.node) node = await nodeOf(info.node);
        state = !info ? 'missing' : info.running ? 'running' : 'exited';
        if (info && !info.running) stopReason = whyStopped(record.limits.timeoutSeconds, info);
      } else if (state === 'running') state = 'missing';
      const spare = record.state === 'pooled';
      if (spare) state = 'pooled';
      // Its work was judged: none (lifecycle.ts removeAfterStatus). Whatever its container says, it is going.
      if (record.state === 'removing') state = 'removing';
      const repo = spare ? undefined : await repoOf(record);
      // Work an exec left pending (moat killed before its sync) comes home before it is counted.
      if (repo) record = await settlePendingSync(ctx, repo, record);
      const commits = repo ? await countTaskCommits(repo, record) : 0;
      return {
        name: record.name,
        state,
        branch: record.branch,
        image: record.image,
        template: record.template,
        createdAt: record.createdAt,
        ageSeconds: Math.max(0, Math.round((now - Date.parse(record.createdAt)) / 1000)),
        limits: diskCapOf(record).capped ? record.limits : withoutDisk(record.limits),
        disk: diskCapOf(record).text,
        limitEnforcement: enforcementText(record.unenforcedLimits, 'the engine cannot set it here; accepted in your config'),
        network: record.network,
        commits,
        ...(spare ? { spare: true as const } : {}),
        ...(stopReason ? { stopReason } : {}),
        egress: await egressCounts(ctx, record),
        repoPath: record.repoPath,
        containerId: record.containerId,
        ports: await listPorts(ctx, record),
        isolation: record.isolation ?? 'runc',
        ...(node ? { node } : {}),
      };
    }),
  );
}

/**
 * Commits on the task branch beyond its base: the branch as it is now (it is the user's to move;
 * a sync that found it moved parks the task's work instead), or the last synced tip without it.
 */
async function countTaskCommits(repo: UserRepository, record: TaskRecord): Promise<number> {
  const tip = (await repo.refValue(`refs/heads/${record.branch}`).catch(() => undefined)) ?? record.syncedTip;
  return repo.countCommits(record.baseCommit, tip).catch(() => 0);
}

export async function taskLogs(ctx: MoatContext, task: string, options: LogOptions, out: Writable, err: Writable): Promise<void> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  if (!record.containerId)
    throw new MoatError('E_TASK_NOT_RUNNING', `task ${task} has no container, so no logs`, { hint: `start one with moat reset ${task}` });
  const engine = await ctx.engine();
  await engine.logs(record.containerId, options, out, err);
}

/** The time limit shows as the main process dying at (about) the limit; anything else is said as is. */
function whyStopped(timeoutSeconds: number | undefined, info: { exitCode?: number; oomKilled?: boolean; startedAt?: string; finishedAt?: string }): string {
  if (info.oomKilled) return 'memory limit';
  if (info.exitCode === IDLE_EXIT) return 'idle limit';
  const ran = (Date.parse(info.finishedAt ?? '') - Date.parse(info.startedAt ?? '')) / 1000;
  if (timeoutSeconds && timeoutSeconds > 0 && (info.exitCode === 137 || info.exitCode === 124) && ran >= timeoutSeconds - 1)
    return `time limit (${timeoutSeconds}s)`;
  return `main process exited (${info.exitCode ?? '?'}); moat reset starts a fresh container`;
}

/** The workspace's cap as the task was made: a loop-mounted ext4 image, or none (and why). */
export function diskCapOf(record: TaskRecord): { capped: boolean; text: string } {
  if (record.disk === 'loop') return { capped: true, text: `capped at ${formatSize(record.limits.diskBytes)} (a loop-mounted ext4 image)` };
  if (record.disk === 'engine' && record.diskHow) return { capped: true, text: `capped at ${formatSize(record.limits.diskBytes)} (${record.diskHow})` };
  if (record.disk === 'engine')
    return { capped: true, text: `capped at ${formatSize(record.limits.diskBytes)} (an ext4 volume the engine mounts from a loop device)` };
  return { capped: false, text: `NOT capped: ${record.diskWhy ?? diskUncappedWhy(record.workspace === 'volume')}` };
}

function withoutDisk(limits: Limits): Omit<Limits, 'diskBytes'> {
  const { diskBytes: _unenforced, ...rest } = limits;
  return rest;
}
