/**
 * Which of a sandbox's cgroup limits the kernel enforces on an engine. Pure: the engine adapter
 * says what it can do (Podman: engine/podman-engine.ts), the services decide and report.
 */

/** The limits moat sets through cgroup controllers (the rlimits, tmpfs sizes, disk cap and time limit are not). */
export type CgroupLimit = 'memory' | 'cpus' | 'pids';
export const CGROUP_LIMITS: readonly CgroupLimit[] = ['memory', 'cpus', 'pids'];

/** What an engine can hold a sandbox to: the limits it cannot enforce here, and why. */
export interface LimitEnforcement {
  unenforced: CgroupLimit[];
  why?: string;
  /** What would close the gap on this engine, where it is not "rootful, or cgroup v2 with delegation". */
  remedy?: string;
}

/** Each cgroup limit as said to the user: "enforced" or "NOT enforced (why)". Never a limit claimed that is not held. */
export function enforcementText(unenforced: readonly CgroupLimit[] | undefined, why?: string): Record<CgroupLimit, string> {
  const gap = new Set(unenforced ?? []);
  const text = (limit: CgroupLimit) => (gap.has(limit) ? `NOT enforced${why ? ` (${why})` : ''}` : 'enforced');
  return { memory: text('memory'), cpus: text('cpus'), pids: text('pids') };
}
