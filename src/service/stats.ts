import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerStats } from '../engine/engine.js';
import type { MoatContext } from './context.js';
import { egressLog } from './egress.js';

export interface TaskStats {
  task: string;
  running: boolean;
  container?: ContainerStats;
  limits: { memoryBytes: number; cpus: number; pids: number };
  /** Bytes the task's workspace takes on the host disk (allocated blocks, so sparse files count as they are). */
  workspaceBytes: number;
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
        workspaceBytes: await diskUsage(ctx.store.workspacePath(record.repoKey, record.name)),
        ...(record.disk === 'loop' ? { diskCapBytes: record.limits.diskBytes } : {}),
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
