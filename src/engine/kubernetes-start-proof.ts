import type { V1Pod } from '@kubernetes/client-node';
import { SANDBOX_CONTAINER } from './kubernetes-pod.js';
import { guardFinished } from './kubernetes-watch.js';

/**
 * A pod's start as moat proves it, against its status as the kubelet reports it. startContainer
 * returns once a command runs in the sandbox (an exec's shell answers); the kubelet reports the
 * started container only at its next relist, a second later and more on a loaded node. In that
 * window the pod's status still says Pending: a sync that took its word ("not running: the
 * workspace went with its pod") read nothing and brought nothing home, without a word, and a
 * commit made by the first command was lost with the pod (issue 19: the eviction fault test, once
 * the seed took the start proof and the first command came a round trip sooner).
 *
 * Kept per process, as the waiting execs are (the warm server's requests each have an engine of
 * their own): the pod's uid, so that a pod of the same name made later is not taken for proven.
 */
const proven = new Map<string, string>();

/** startContainer proved the pod's start (`key`: the engine's key for the pod, `uid`: the pod's). */
export function proveStart(key: string, uid: string | undefined): void {
  if (uid) proven.set(key, uid);
}

/** The pod went, or another of its name is made: no proof stands for it. */
export function forgetStart(key: string): void {
  proven.delete(key);
}

/** Whether this process proved this very pod's start. */
export function startProven(key: string, pod: V1Pod): boolean {
  const uid = pod.metadata?.uid;
  return uid !== undefined && proven.get(key) === uid;
}

/** Whether the status says the sandbox runs (then no proof is needed). */
export function reportedRunning(pod: V1Pod): boolean {
  const sandbox = pod.status?.containerStatuses?.find((c) => c.name === SANDBOX_CONTAINER);
  return pod.status?.phase === 'Running' && sandbox?.state?.running != null;
}

/**
 * Whether the sandbox may run although the status does not say so (yet): the pod is on a node,
 * not on its way out, not ended, its network guard done (the sandbox starts only after it), and
 * its sandbox neither ended nor reported. Only then is a proof looked for.
 */
export function mayRunUnreported(pod: V1Pod): boolean {
  const phase = pod.status?.phase ?? 'Pending';
  const sandbox = pod.status?.containerStatuses?.find((c) => c.name === SANDBOX_CONTAINER);
  if (pod.metadata?.deletionTimestamp != null || !pod.spec?.nodeName) return false;
  if ((phase !== 'Pending' && phase !== 'Running') || sandbox?.state?.terminated) return false;
  return !reportedRunning(pod) && guardFinished(pod);
}
