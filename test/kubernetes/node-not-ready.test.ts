import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { CoreV1Api } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { isMoatError } from '../../src/index.js';
import { gitIn } from '../helpers/fixtures.js';
import { clusterFixture, NO_NETWORK_CONFIG } from '../helpers/cluster-fixture.js';

/**
 * The one node goes NotReady: its kubelet is stopped (scripts/cluster.sh kubelet stop), the node
 * controller marks it after its 40 s grace and taints it, and `moat up` must say in one line that no
 * node can take the task's pod, within its stated 30 s, and leave nothing behind. The kubelet is
 * started again in a finally, and the node is Ready and untainted before the test ends. It stops a
 * component every other test needs: vitest.kubernetes-node.config.ts runs it alone.
 */
const CLUSTER_SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'cluster.sh');

function kubelet(action: 'stop' | 'start'): void {
  execFileSync('bash', [CLUSTER_SCRIPT, 'kubelet', action], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 200_000 });
}

async function nodeReady(core: CoreV1Api): Promise<string | undefined> {
  const node = await core.readNode({ name: 'localhost' });
  return node.status?.conditions?.find((c) => c.type === 'Ready')?.status;
}

describe('moat on Kubernetes: the node not Ready', () => {
  const cluster = clusterFixture(NO_NETWORK_CONFIG);

  it('moat up says no node can take the pod (one line, hint, exit 4) within its 30 s, and leaves nothing labelled', { timeout: 420_000 }, async () => {
    const { ns, scratch, moat } = cluster;
    const core = ns.core;
    expect(await nodeReady(core)).toBe('True');
    // A task made while the node was Ready: ls says so, then that its node no longer is.
    await moat.up({ task: 'before' });
    expect((await moat.ls()).find((t) => t.name === 'before')?.node).toEqual({ name: 'localhost', ready: true });
    kubelet('stop');
    try {
      // The node controller's grace (40 s), then its taint: poll for both, for at most 120 s.
      for (let i = 0; i < 240; i += 1) {
        const node = await core.readNode({ name: 'localhost' });
        const ready = node.status?.conditions?.find((c) => c.type === 'Ready')?.status;
        if (ready !== 'True' && node.spec?.taints?.some((t) => t.key === 'node.kubernetes.io/unreachable' && t.effect === 'NoSchedule')) break;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      expect(await nodeReady(core)).not.toBe('True');
      // doctor says so, as a failing check with a fix.
      const sick = (await moat.doctor()).checks.find((c) => c.name === 'nodes');
      expect(sick).toMatchObject({ status: 'fail', fix: expect.stringMatching(/kubectl get nodes/) });
      expect(sick?.detail).toMatch(/^no node is Ready, so no task can start: localhost \(Ready unknown: Kubelet stopped posting node status/);
      // ls (its summary is what --json prints) says the task's node is not Ready, in the doctor's words.
      const listed = (await moat.ls()).find((t) => t.name === 'before');
      expect(listed?.node).toMatchObject({
        name: 'localhost',
        ready: false,
        why: expect.stringMatching(/^Ready unknown: Kubelet stopped posting node status/),
      });
      expect(sick?.detail).toContain(listed?.node?.why);

      const error = await moat.up({ task: 'stuck' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isMoatError(error)).toBe(true);
      expect(error).toMatchObject({ code: 'E_ENGINE_FAILED', exitCode: 4 });
      const message = (error as Error).message;
      expect(message).toMatch(/^no node can take pod \S+ within 30 s: 0\/1 nodes are available: .*unreachable/);
      expect(message).toMatch(/not Ready: localhost/);
      expect(message).not.toContain('\n');
      expect((error as { hint?: string }).hint).toMatch(/kubectl get nodes/);
      // Rolled back: no pod, no volume, no branch, no task.
      expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=stuck' })).items).toEqual([]);
      expect((await core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: 'moat.task=stuck' })).items).toEqual([]);
      expect(gitIn(scratch.repo, 'branch', '--list', 'moat/stuck')).toBe('');
      expect((await moat.ls()).map((t) => t.name)).not.toContain('stuck');
    } finally {
      kubelet('start');
    }
    expect(await nodeReady(core)).toBe('True');
    expect((await moat.doctor()).checks.find((c) => c.name === 'nodes')).toMatchObject({ status: 'ok', detail: '1 of 1 nodes Ready' });
    // The node takes pods again: a task starts and answers.
    await moat.up({ task: 'after' });
    await moat.rm('after', { force: true });
    await moat.rm('before', { force: true });
  });
});
