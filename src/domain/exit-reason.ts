/** Why a command in the sandbox ended, worked out from its status and the kernel's counters. Pure. */
export interface ExitFacts {
  exitCode: number;
  /** Did the memory cgroup kill something during the command? */
  oomKilled: boolean;
  /** Did fork/clone fail on the pids limit during the command? */
  pidsLimitHit: boolean;
}

export type ExitReason =
  | { kind: 'ok' }
  | { kind: 'exit'; code: number }
  | { kind: 'signal'; signal: string; code: number }
  | { kind: 'oom'; code: number }
  | { kind: 'pids-limit'; code: number };

const SIGNALS: Record<number, string> = {
  1: 'SIGHUP',
  2: 'SIGINT',
  3: 'SIGQUIT',
  6: 'SIGABRT',
  9: 'SIGKILL',
  11: 'SIGSEGV',
  13: 'SIGPIPE',
  14: 'SIGALRM',
  15: 'SIGTERM',
};

export function exitReason(facts: ExitFacts): ExitReason {
  const code = facts.exitCode;
  if (code === 0) return { kind: 'ok' };
  if (facts.oomKilled) return { kind: 'oom', code };
  if (facts.pidsLimitHit) return { kind: 'pids-limit', code };
  if (code > 128 && code < 128 + 65) return { kind: 'signal', signal: SIGNALS[code - 128] ?? `signal ${code - 128}`, code };
  return { kind: 'exit', code };
}

export function describeExit(reason: ExitReason): string | undefined {
  switch (reason.kind) {
    case 'ok':
    case 'exit':
      return undefined;
    case 'oom':
      return `killed by the out-of-memory killer: the task hit its memory limit (raise limits.memory in your user config)`;
    case 'pids-limit':
      return `the task hit its process limit (limits.pids): a fork failed`;
    case 'signal':
      return `killed by ${reason.signal}`;
  }
}
