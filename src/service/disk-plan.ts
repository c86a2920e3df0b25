import type { ContainerEngine } from '../engine/engine.js';
import { diskUncappedWhy, loopMountAvailable } from '../workspace/task-volume.js';

/** How a new task's workspace is capped here, and where it lives as a consequence. */
export interface DiskPlan {
  /** `loop`: a host folder on a loop mount (moat is root); `engine`: an engine volume of fixed size; `none`: no cap. */
  disk: 'loop' | 'engine' | 'none';
  /** The workspace is an engine volume (seeded and read through exec) rather than a host folder. */
  inVolume: boolean;
  /** Why nothing caps the workspace (disk `none`), in the words `up`, `doctor` and `ls` use. */
  why?: string;
  /** How an engine's cap holds, where it is not an ext4 volume (DiskCapSupport's `how`). */
  how?: string;
}

/**
 * Chooses the disk cap a task gets: the host's loop mount where moat may make one (root, the
 * fastest: the host reads the workspace directly), else one the engine makes on the user's behalf
 * (a docker-group user; a remote engine with loop devices), else none, and why.
 * `MOAT_DISK=engine` prefers the engine's cap even as root (it is as strict; tests use it).
 */
export async function planDisk(engine: ContainerEngine, input: { uid: number; helperImage: string; env: NodeJS.ProcessEnv }): Promise<DiskPlan> {
  const hostFolders = engine.capabilities.hostMounts;
  if (hostFolders && input.env.MOAT_DISK !== 'engine' && (await loopMountAvailable(input.uid))) return { disk: 'loop', inVolume: false };
  const support = await engine.diskCapSupport(input.helperImage);
  if (support.ok) return { disk: 'engine', inVolume: true, ...(support.how ? { how: support.how } : {}) };
  const why = hostFolders ? `${diskUncappedWhy(false)}, and ${support.why}` : support.why;
  return { disk: 'none', inVolume: !hostFolders, why };
}

/** How a plan is told: what holds, in the words of `doctor`. */
export function describeDisk(plan: DiskPlan): string {
  if (plan.disk === 'loop') return 'kernel: each task writes to its own loop-mounted ext4 image of limits.disk';
  if (plan.disk === 'engine' && plan.how) return plan.how;
  if (plan.disk === 'engine')
    return 'kernel: each task writes to its own ext4 volume of limits.disk, made by the engine from a loop device (no root needed of moat)';
  return `workspace NOT capped (${plan.why ?? diskUncappedWhy(plan.inVolume)})`;
}
