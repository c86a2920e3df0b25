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
 * gofer, their goroutines' OS threads, and on the ptrace platform a stub thread per address space
 * and Sentry thread that entered it) run in the container's cgroup and count against it: about 44-56
 * at rest and 8-11 more per process the agent keeps. A fork bomb's churn (forks refused, processes
 * ending and made again) takes far more, with a part that does not grow with the limit: peaks of
 * 1556 host pids at pids 32, 4136 at 64, 5024 at 128, 7910 at 512 (runsc 20221219, ptrace, 2 cores,
 * no CPU limit). At pids x 12 + 64 such a bomb ran the cgroup out on one machine: runsc could not
 * make a thread and the sandbox died with its task. Hence room for the churn; the cgroup still bounds
 * what a sandbox (or an escape from it) takes of the host's pids. The user's figure is enforced
 * inside the sandbox, by gVisor's kernel (RLIMIT_NPROC: gVisor counts the sandbox's own tasks,
 * unlike the host kernel's per-uid count).
 */
export function gvisorHostPids(pids: number): number {
  return pids * 16 + 4096;
}
