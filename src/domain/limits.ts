/** Resource limits of one task, in engine units. Pure: no I/O. */
export interface Limits {
  /** Memory in bytes; swap is held to the same figure so the limit cannot be dodged by swapping. */
  memoryBytes: number;
  /** CPUs as a fraction of cores (1.5 = one and a half cores). */
  cpus: number;
  /** Most processes and threads at once: stops fork bombs. */
  pids: number;
  /** Open files per process (RLIMIT_NOFILE, soft = hard). */
  nofile: number;
  /** Size of the /tmp tmpfs. */
  tmpBytes: number;
  /** Size of the home directory tmpfs. */
  homeBytes: number;
}

export const DEFAULT_LIMITS: Limits = {
  memoryBytes: 2 * 1024 ** 3,
  cpus: 2,
  pids: 512,
  nofile: 4096,
  tmpBytes: 512 * 1024 ** 2,
  homeBytes: 512 * 1024 ** 2,
};

export type LimitKey = keyof Limits;

/** The user-config key that grants each limit, for messages that tell the user what to change. */
export const LIMIT_CONFIG_KEY: Record<LimitKey, string> = {
  memoryBytes: 'limits.memory',
  cpus: 'limits.cpus',
  pids: 'limits.pids',
  nofile: 'limits.nofile',
  tmpBytes: 'limits.tmp',
  homeBytes: 'limits.home',
};

/** Limits where `requested` asks for more than `granted`: every limit is "lower is narrower". */
export function widenedLimits(granted: Limits, requested: Partial<Limits>): LimitKey[] {
  return (Object.keys(requested) as LimitKey[]).filter((key) => {
    const value = requested[key];
    return value !== undefined && value > granted[key];
  });
}
