import { Watch, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { NETGUARD_CONTAINER } from './kubernetes-pod.js';

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
