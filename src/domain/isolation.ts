import { MoatError } from '../errors.js';

/**
 * What stands between a sandbox and the host's kernel. `runc`: Linux namespaces, cgroups, seccomp
 * and dropped capabilities (the default). `gvisor`: the same, plus gVisor's user-space kernel
 * (runsc): the agent's system calls reach gVisor's Sentry, not the host kernel. Pure: no I/O.
 */
export type Isolation = 'runc' | 'gvisor';

export const ISOLATIONS: readonly Isolation[] = ['runc', 'gvisor'];

/** How strong each isolation is: a repository may ask for a stronger one, never a weaker. */
export const ISOLATION_STRENGTH: Record<Isolation, number> = { runc: 0, gvisor: 1 };

/** The engine's name for gVisor's runtime, as scripts/setup-gvisor.sh registers it with Docker. */
export const GVISOR_RUNTIME = 'runsc';

/** A value given on the command line or in MOAT_ISOLATION, checked; undefined when not given. */
export function parseIsolation(value: string | undefined, where: string): Isolation | undefined {
  if (value === undefined || value === '') return undefined;
  if ((ISOLATIONS as readonly string[]).includes(value)) return value as Isolation;
  throw new MoatError('E_USAGE', `${where}: unknown isolation ${JSON.stringify(value.slice(0, 40))}`, { hint: 'use runc (the default) or gvisor' });
}

/**
 * The pids cgroup limit of a gVisor sandbox's container. runsc's own threads (the Sentry, the
 * gofer, their goroutines' OS threads) run in the container's cgroup and count against it: about
 * 56 at rest and about 11 more per process the agent runs (measured with runsc 20221219, ptrace
 * platform). The user's figure is enforced inside the sandbox instead, by gVisor's kernel
 * (RLIMIT_NPROC: gVisor counts the sandbox's own tasks, unlike the host kernel's per-uid count).
 */
export function gvisorHostPids(pids: number): number {
  return pids * 12 + 64;
}
