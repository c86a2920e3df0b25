import { readFile } from 'node:fs/promises';
import type { ContainerEngine } from '../engine/engine.js';

/** Kernel counters of a container's cgroup that tell why a command died. */
export interface CgroupCounters {
  oomKills: number;
  pidsMax: number;
}

/** Where the engine puts a container's cgroup, for cgroup v1 and v2 and both cgroup drivers. */
function candidateDirs(id: string): Array<{ memory: string; pids: string; v2: boolean }> {
  const v1 = (parent: string) => ({ memory: `/sys/fs/cgroup/memory/${parent}`, pids: `/sys/fs/cgroup/pids/${parent}`, v2: false });
  const v2 = (parent: string) => ({ memory: `/sys/fs/cgroup/${parent}`, pids: `/sys/fs/cgroup/${parent}`, v2: true });
  // Podman's (libpod): libpod_parent/ with the cgroupfs manager, machine.slice/ with systemd's.
  const libpod = [v1(`libpod_parent/libpod-${id}`), v1(`machine.slice/libpod-${id}.scope`), v2(`machine.slice/libpod-${id}.scope`)];
  return [v1(`docker/${id}`), v1(`system.slice/docker-${id}.scope`), v2(`system.slice/docker-${id}.scope`), v2(`docker/${id}`), ...libpod];
}

function counter(text: string, key: string): number | undefined {
  const match = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * Reads the counters from the host's cgroup filesystem (kernel files: nothing the sandbox can
 * forge), or, where moat cannot see the engine's cgroups, from inside the container.
 */
export async function readCounters(engine: ContainerEngine, id: string, user: string): Promise<CgroupCounters | undefined> {
  // Only where the engine's cgroups are this host's: a remote engine's container ids mean nothing here.
  for (const dir of engine.capabilities.hostCgroups ? candidateDirs(id) : []) {
    const memory = await readFile(`${dir.memory}/${dir.v2 ? 'memory.events' : 'memory.oom_control'}`, 'utf8').catch(() => undefined);
    const pids = await readFile(`${dir.pids}/pids.events`, 'utf8').catch(() => undefined);
    if (memory !== undefined && pids !== undefined) return { oomKills: counter(memory, 'oom_kill') ?? 0, pidsMax: counter(pids, 'max') ?? 0 };
  }
  const inside = await engine
    // By absolute path: the agent's ~/.local/bin comes first on the sandbox's PATH.
    .execCapture(
      id,
      {
        cmd: [
          '/bin/cat',
          '/sys/fs/cgroup/memory/memory.oom_control',
          '/sys/fs/cgroup/pids/pids.events',
          '/sys/fs/cgroup/memory.events',
          '/sys/fs/cgroup/pids.events',
        ],
        user,
      },
      65536,
    )
    .catch(() => undefined);
  if (!inside) return undefined;
  const text = inside.stdout.toString('utf8');
  return { oomKills: counter(text, 'oom_kill') ?? 0, pidsMax: counter(text, 'max') ?? 0 };
}
