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
  /** Wall-clock life of the task's container in seconds; 0 for no limit. */
  timeoutSeconds: number;
  /** Everything the task can write to its workspace, where the kernel can enforce it. */
  diskBytes: number;
  /** Stop the task after this many seconds with nothing running in it; 0 for no limit. */
  idleSeconds?: number;
}

export const DEFAULT_LIMITS: Limits = {
  memoryBytes: 2 * 1024 ** 3,
  cpus: 2,
  pids: 512,
  nofile: 4096,
  tmpBytes: 512 * 1024 ** 2,
  homeBytes: 512 * 1024 ** 2,
  timeoutSeconds: 0,
  diskBytes: 10 * 1024 ** 3,
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
  timeoutSeconds: 'limits.timeout',
  diskBytes: 'limits.disk',
  idleSeconds: 'limits.idle',
};

/** Limits where `requested` asks for more than `granted`: every limit is "lower is narrower". */
export function widenedLimits(granted: Limits, requested: Partial<Limits>): LimitKey[] {
  return (Object.keys(requested) as LimitKey[]).filter((key) => {
    const value = requested[key];
    if (value === undefined) return false;
    // For the time limit 0 means "none", the widest of all.
    if (key === 'timeoutSeconds' || key === 'idleSeconds') return (value === 0 ? Infinity : value) > ((granted[key] ?? 0) === 0 ? Infinity : granted[key]!);
    return value > granted[key];
  });
}

/** Durations as users write them ("90s", "30m", "2h", "1d", or seconds) to seconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const match = /^\s*(\d+)\s*(s|m|h|d)?\s*$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * ({ s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[match[2] ?? 's']!;
}
