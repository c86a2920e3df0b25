import { CoreV1Api, Watch, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { MoatError } from '../errors.js';
import { NETGUARD_CONTAINER, SANDBOX_CONTAINER } from './kubernetes-pod.js';

/** The changes of one pod as they happen: the newest one not yet taken, or nothing after `ms`. */
export interface PodChanges {
  next(ms: number): Promise<V1Pod | undefined>;
  /** False once the watch ended or was refused: the caller reads the pod itself then. */
  open(): boolean;
  stop(): void;
}

/**
 * Watches one pod from `resourceVersion` on (the API server pushes each change: no polling delay,
 * no read per step). A watch that cannot be made, or ends, says so through `open()`; it is never
 * an error of its own, the caller's reads take over.
 */
export async function watchPod(kc: KubeConfig, namespace: string, name: string, resourceVersion?: string): Promise<PodChanges> {
  let latest: V1Pod | undefined;
  let open = true;
  let wake: (() => void) | undefined;
  const wakeUp = () => {
    wake?.();
    wake = undefined;
  };
  let controller: AbortController | undefined;
  try {
    controller = await new Watch(kc).watch(
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
      { fieldSelector: `metadata.name=${name}`, ...(resourceVersion ? { resourceVersion } : {}), allowWatchBookmarks: false },
      (type: string, object: V1Pod) => {
        if (type === 'ADDED' || type === 'MODIFIED') {
          latest = object;
          wakeUp();
        }
      },
      () => {
        open = false;
        wakeUp();
      },
    );
  } catch {
    open = false;
  }
  return {
    async next(ms: number) {
      // Without a watch the wait is a plain pause: the caller reads the pod after it.
      if (!latest) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, ms);
        });
        clearTimeout(timer);
        wake = undefined;
      }
      const pod = latest;
      latest = undefined;
      return pod;
    },
    open: () => open,
    stop: () => {
      open = false;
      controller?.abort();
    },
  };
}

/** Whether the pod's network guard ran and succeeded: from then on the sandbox may be running. */
export function guardFinished(pod: V1Pod): boolean {
  return pod.status?.initContainerStatuses?.find((c) => c.name === NETGUARD_CONTAINER)?.state?.terminated?.exitCode === 0;
}

/** How a pod ended under the commands running in it. */
export interface PodEnd {
  reason: 'evicted' | 'deleted' | 'failed';
  /** The kubelet's or the API server's words, on one line (empty when none were given). */
  message: string;
  /** Seen at the watch's first read: the pod had ended before the command could run. */
  already?: boolean;
}

/**
 * Whether `pod` has ended (undefined: it runs, or still starts). An eviction is named first: the
 * kubelet marks an evicted pod Failed too, and its message (the emptyDir past its sizeLimit, say)
 * is what the user needs.
 */
export function podEnd(pod: V1Pod | undefined): PodEnd | undefined {
  if (!pod) return { reason: 'deleted', message: '' };
  const status = pod.status;
  if (status?.reason === 'Evicted') return { reason: 'evicted', message: oneLine(status.message) };
  if (pod.metadata?.deletionTimestamp) return { reason: 'deleted', message: '' };
  if (status?.phase === 'Failed' || status?.phase === 'Succeeded') {
    return { reason: 'failed', message: oneLine(`${status.reason ?? status.phase}${status.message ? `: ${status.message}` : ''}`) };
  }
  const sandbox = status?.containerStatuses?.find((c) => c.name === SANDBOX_CONTAINER)?.state?.terminated;
  if (sandbox) return { reason: 'failed', message: oneLine(`its sandbox container ended (${sandbox.reason ?? 'exit'} ${sandbox.exitCode})`) };
  return undefined;
}

/**
 * A command into a pod that had ended before it could run: "not running", as when the exec is
 * refused (the status 409 is how the task layer knows it, and says `E_TASK_NOT_RUNNING`).
 */
export function podNotRunning(name: string, end: PodEnd): MoatError {
  return new MoatError('E_ENGINE_FAILED', `pod ${name} is not running (${end.reason}${end.message ? `: ${end.message}` : ''})`, {
    hint: 'moat reset TASK makes a new one',
    cause: { statusCode: 409 },
    details: { pod: name, podEnd: end.reason },
  });
}

/** What a command hears when its pod ended under it: one line, why, and what to do. */
export function podEndError(name: string, end: PodEnd): MoatError {
  if (end.already) return podNotRunning(name, end);
  const details = { pod: name, podEnd: end.reason, ...(end.message ? { message: end.message } : {}) };
  const safe = 'commits synced before are on the task branch';
  if (end.reason === 'evicted') {
    const disk = /ephemeral|emptydir|storage|disk/i.test(end.message);
    return new MoatError('E_ENGINE_FAILED', `pod ${name} was evicted by its node${end.message ? `: ${end.message}` : ''}`, {
      hint: disk
        ? `a workspace past limits.disk (the emptyDir's sizeLimit) is evicted, not refused: raise limits.disk in your config, then \`moat reset TASK\` (${safe})`
        : `the node needed the room back: \`moat reset TASK\` starts a new pod (${safe})`,
      details,
    });
  }
  if (end.reason === 'deleted') {
    return new MoatError('E_ENGINE_FAILED', `pod ${name} was deleted while the command ran`, {
      hint: `something else removed it (kubectl delete, \`moat rm\` elsewhere, or its node going away): \`moat reset TASK\` makes a new one (${safe})`,
      details,
    });
  }
  return new MoatError('E_ENGINE_FAILED', `pod ${name} ended while the command ran: ${end.message || 'no reason given'}`, {
    hint: `kubectl describe pod ${name} says more; \`moat reset TASK\` makes a new one (${safe})`,
    details,
  });
}

/** A joined watch: `ended` settles only if the pod ends while it is held; `leave` when the command is done. */
export interface PodEndWatch {
  ended: Promise<PodEnd>;
  leave(): void;
}

/** How soon a watch that ended (or could not be made) is made again. */
const REWATCH_MS = 1000;

/**
 * The end of each pod commands run in, as the API server pushes it: an exec stream into a pod that
 * was evicted or deleted is not always closed by the kubelet (dockershim leaves it open), so every
 * command also waits on its pod. One watch per pod, shared by the commands running in it at once,
 * stopped when the last one is done (a watch left open would keep a one-shot CLI from exiting).
 */
export class PodEndWatches {
  private readonly watches = new Map<string, { users: number; ended: Promise<PodEnd>; stop: () => void }>();

  constructor(
    private readonly kc: KubeConfig,
    private readonly namespace: string,
  ) {}

  join(name: string): PodEndWatch {
    let entry = this.watches.get(name);
    if (!entry) {
      const made = followPod(this.kc, this.namespace, name);
      const fresh = { users: 0, ...made };
      // An ended pod's watch is not handed to later commands: a pod of the same name (moat reset) is a new one.
      void made.ended.then(() => {
        if (this.watches.get(name) === fresh) this.watches.delete(name);
      });
      this.watches.set(name, fresh);
      entry = fresh;
    }
    const held = entry;
    held.users += 1;
    let left = false;
    return {
      ended: held.ended,
      leave: () => {
        if (left) return;
        left = true;
        held.users -= 1;
        if (held.users > 0) return;
        held.stop();
        if (this.watches.get(name) === held) this.watches.delete(name);
      },
    };
  }
}

/**
 * Reads the pod (its version, and whether it is already gone), then watches it from there; a
 * watch that ends (the API server closes them after a while, or went away) is made again with a
 * fresh read, so no change between the two is missed.
 */
function followPod(kc: KubeConfig, namespace: string, name: string): { ended: Promise<PodEnd>; stop: () => void } {
  const core = kc.makeApiClient(CoreV1Api);
  let stopped = false;
  let controller: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  let settle: (end: PodEnd) => void = () => undefined;
  const ended = new Promise<PodEnd>((resolve) => (settle = resolve));
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    controller?.abort();
  };
  const finish = (end: PodEnd) => {
    settle(end);
    stop();
  };
  const again = () => {
    if (!stopped) timer = setTimeout(() => void round(), REWATCH_MS);
  };
  let first = true;
  const round = async () => {
    const already = first;
    first = false;
    let pod: V1Pod;
    try {
      pod = await core.readNamespacedPod({ name, namespace });
    } catch (error) {
      if ((error as { code?: unknown }).code === 404) finish({ reason: 'deleted', message: '', already });
      // Not answering: the command's own stream says so; the pod is read again meanwhile.
      else again();
      return;
    }
    if (stopped) return;
    const end = podEnd(pod);
    if (end) return finish({ ...end, already });
    const made = await new Watch(kc).watch(
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
      { fieldSelector: `metadata.name=${name}`, resourceVersion: pod.metadata?.resourceVersion, allowWatchBookmarks: false },
      (type: string, object: V1Pod) => {
        // ERROR (410: that version is too old) ends the stream, and the next round reads afresh.
        if (type === 'DELETED') finish({ reason: 'deleted', message: '' });
        else if (type === 'ADDED' || type === 'MODIFIED') {
          const gone = podEnd(object);
          if (gone) finish(gone);
        }
      },
      () => again(),
    );
    controller = made;
    if (stopped) made.abort();
  };
  void round().catch(() => again());
  return { ended, stop };
}

function oneLine(text: string | undefined): string {
  return (text ?? '').replace(/\s+/g, ' ').trim().slice(0, 300);
}
