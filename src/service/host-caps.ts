import { diskUncappedWhy } from '../workspace/task-volume.js';
import type { EngineKind } from '../engine/engine.js';
import { containerLogCap } from './doctor-engines.js';
import { DEFAULT_LIMITS } from '../domain/limits.js';
import { formatSize, parseSize } from '../domain/size.js';
import { auditBytes, auditMaxBytes } from '../gateway/audit.js';
import { auditFile } from './egress.js';
import type { MoatContext } from './context.js';
import { MAX_BUNDLE_BYTES } from './sync.js';
import { MAX_SPARES_PER_SERVER } from './task-pool.js';
import { maxServers, serverDir, warmServers } from './warm-servers.js';

/** One kind of host file (or process) a sandbox can make grow, and what bounds it. */
export interface HostCap {
  name: string;
  /** The cap, in words, with the knob that changes it. */
  cap: string;
  /** What it takes on this machine now, where moat can tell. */
  now?: string;
}

/**
 * Everything on the host that a sandbox's activity makes grow, each with its cap: `moat doctor`
 * lists them so that "outside the sandbox's disk cap" is never a surprise.
 */
export async function hostCaps(ctx: MoatContext, diskCapped: boolean, remote = false, engineKind?: EngineKind): Promise<HostCap[]> {
  const records = await ctx.store.listAll({ pooled: true }).catch(() => []);
  const auditMax = auditMaxBytes(ctx.env);
  const auditTotal = records.reduce((sum, record) => sum + auditBytes(auditFile(ctx, record)), 0);
  const userDisk = (await ctx.userConfig().catch(() => undefined))?.limits?.disk;
  const diskBytes = (userDisk !== undefined ? parseSize(userDisk) : undefined) ?? DEFAULT_LIMITS.diskBytes;
  const servers = await warmServers(serverDir(ctx.env, ctx.hostUser.uid)).catch(() => []);
  const serverMax = maxServers(ctx.env);
  const idle = Number(ctx.env.MOAT_SERVER_IDLE_SECONDS) || 300;
  return [
    {
      name: 'workspace disk',
      cap: diskCapped
        ? `limits.disk (${formatSize(diskBytes)} per task): an ext4 image of that size on a loop device (mounted by moat as root, or by the engine)`
        : remote
          ? `NOT capped here (${diskUncappedWhy(true)}): a task can fill the engine's disk`
          : `NOT capped here (${diskUncappedWhy(false)}): a task can fill the filesystem that holds the moat home`,
    },
    {
      name: 'egress audit log',
      cap: `${formatSize(auditMax)} per file, rotated once: at most ${formatSize(2 * auditMax)} per task, ${formatSize(2 * auditMax)} × tasks in all (MOAT_AUDIT_MAX_BYTES, read when the gateway starts)`,
      now: `${formatSize(auditTotal)} across ${records.length} task(s)`,
    },
    {
      name: 'container logs',
      cap: containerLogCap(engineKind),
    },
    {
      name: 'snapshot bundles',
      cap: `at most ${formatSize(MAX_BUNDLE_BYTES)} per sync, in a file of the task's directory deleted once fetched; uncommitted files over 50 MiB stay out of snapshots`,
    },
    {
      name: 'warm servers',
      cap: `at most ${serverMax} per user (MOAT_SERVER_MAX), each stopping after ${idle}s idle (MOAT_SERVER_IDLE_SECONDS) and keeping at most ${MAX_SPARES_PER_SERVER} spare tasks; files of dead servers are removed when another starts`,
      now: `${servers.length} running`,
    },
  ];
}
