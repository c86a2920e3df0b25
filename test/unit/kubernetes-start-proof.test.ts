import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { containerInfo } from '../../src/engine/kubernetes-engine.js';
import { forgetStart, mayRunUnreported, proveStart, startProven } from '../../src/engine/kubernetes-start-proof.js';

/** A pod as the API server shows it between the start moat proved and the kubelet's report of it. */
function unreported(overrides: { phase?: string; sandbox?: Record<string, unknown>; deleting?: boolean; node?: string; guard?: number } = {}): V1Pod {
  return {
    metadata: { name: 'moat-abc-fix', uid: 'uid-1', ...(overrides.deleting ? { deletionTimestamp: new Date() } : {}) },
    spec: { containers: [{ name: 'sandbox', image: 'moat-base' }], nodeName: overrides.node ?? 'localhost' },
    status: {
      phase: overrides.phase ?? 'Pending',
      initContainerStatuses: [
        { name: 'netguard', ready: false, restartCount: 0, image: '', imageID: '', state: { terminated: { exitCode: overrides.guard ?? 0 } } },
      ],
      containerStatuses: [
        { name: 'sandbox', ready: false, restartCount: 0, image: '', imageID: '', state: overrides.sandbox ?? { waiting: { reason: 'PodInitializing' } } },
      ],
    },
  } as V1Pod;
}

describe("a pod's start proven ahead of its status (issue 19's lost commit)", () => {
  it('is running once proven, while the status still says Pending; not running unproven', () => {
    const pod = unreported();
    expect(containerInfo(pod).running).toBe(false);
    expect(containerInfo(pod, true)).toMatchObject({ running: true, state: 'running' });
  });

  it('never outlives the pod: ended, on its way out, failed, its guard failed or not on a node is not running, proven or not', () => {
    for (const pod of [
      unreported({ sandbox: { terminated: { exitCode: 137 } } }),
      unreported({ deleting: true }),
      unreported({ phase: 'Failed' }),
      unreported({ phase: 'Succeeded' }),
      unreported({ guard: 1 }),
      unreported({ node: '' }),
    ]) {
      expect(mayRunUnreported(pod)).toBe(false);
      expect(containerInfo(pod, true).running).toBe(false);
    }
  });

  it('a status that says running needs no proof', () => {
    const pod = unreported({ phase: 'Running', sandbox: { running: { startedAt: new Date() } } });
    expect(mayRunUnreported(pod)).toBe(false);
    expect(containerInfo(pod).running).toBe(true);
  });

  it('is kept per pod: another pod of the same name (another uid) is not proven, and a forgotten one no longer is', () => {
    const pod = unreported();
    proveStart('k|ns|moat-abc-fix', 'uid-1');
    expect(startProven('k|ns|moat-abc-fix', pod)).toBe(true);
    expect(startProven('k|ns|moat-abc-fix', { ...pod, metadata: { ...pod.metadata, uid: 'uid-2' } })).toBe(false);
    forgetStart('k|ns|moat-abc-fix');
    expect(startProven('k|ns|moat-abc-fix', pod)).toBe(false);
  });
});
