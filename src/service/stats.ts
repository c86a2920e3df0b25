import { enforcementText, type CgroupLimit } from '../domain/limit-enforcement.js';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerEngine, ContainerStats } from '../engine/engine.js';
import { WORKSPACE_DIR } from '../domain/sandbox-spec.js';
import type { TaskRecord } from '../domain/task.js';
import type { MoatContext } from './context.js';
import { egressLog } from './egress.js';

export interface TaskStats {
  task: string;
  running: boolean;
  container?: ContainerStats;
  limits: { memoryBytes: number; cpus: number; pids: number };
  /** Each of those limits: "enforced", or "NOT enforced (…)" where the engine cannot hold it. */
  limitEnforcement: Record<CgroupLimit, string>;
  /**
   * Bytes the task's workspace takes on the host disk (allocated blocks, so sparse files count as
   * they are); for a workspace in an engine volume, what `du` in the running sandbox says (absent
   * when it is not running).
   */
  workspaceBytes?: number;
  /** The kernel-enforced cap on the workspace, when there is one. */
  diskCapBytes?: number;
  egress: { bytesUp: number; bytesDown: number; allowed: number; denied: number };
}

/** Allocated size of a tree, never following links (lstat). */
async function diskUsage(path: string): Promise<number> {
  const info = await lstat(path).catch(() => undefined);
  if (!info) return 0;
  let total = info.blocks * 512;
  if (info.isDirectory()) {
    for (const entry of await readdir(path).catch(() => [] as string[])) total += await diskUsage(join(path, entry));
  }
  return total;
}

/** A volume's usage, from the sandbox's own `du` (its word: for display only). */
async function volumeUsage(engine: ContainerEngine, record: TaskRecord, running: boolean): Promise<number | undefined> {
  if (!running || !record.containerId) return undefined;
  const du = await engine
    .execCapture(record.containerId, { cmd: ['/usr/bin/du', '-sk', WORKSPACE_DIR], user: `${record.user.uid}:${record.user.gid}` }, 4096)
    .catch(() => undefined);
  const kib = du ? /^([0-9]+)\s/.exec(du.stdout.toString('utf8')) : null;
  return kib ? Number(kib[1]) * 1024 : undefined;
}

export async function taskStats(ctx: MoatContext, task?: string): Promise<TaskStats[]> {
  const repo = await ctx.repo();
  const records = task ? [await ctx.store.require(repo.key, task)] : await ctx.store.list(repo.key);
  const engine = await ctx.engine();
  return Promise.all(
    records.map(async (record) => {
      const container = record.containerId ? await engine.stats(record.containerId) : undefined;
      const audit = await egressLog(ctx, record.name);
      return {
        task: record.name,
        running: container !== undefined,
        container,
        limits: { memoryBytes: record.limits.memoryBytes, cpus: record.limits.cpus, pids: record.limits.pids },
        limitEnforcement: enforcementText(record.unenforcedLimits, 'the engine cannot set it here; accepted in your config'),
        workspaceBytes:
          record.workspace === 'volume'
            ? await volumeUsage(engine, record, container !== undefined)
            : await diskUsage(ctx.store.workspacePath(record.repoKey, record.name)),
        ...(record.disk === 'loop' || record.disk === 'engine' ? { diskCapBytes: record.limits.diskBytes } : {}),
        egress: {
          bytesUp: audit.reduce((sum, a) => sum + a.bytesUp, 0),
          bytesDown: audit.reduce((sum, a) => sum + a.bytesDown, 0),
          allowed: audit.filter((a) => a.decision === 'allowed').length,
          denied: audit.filter((a) => a.decision === 'denied').length,
        },
      };
    }),
  );
}
