import { describe, expect, it } from 'vitest';
import { captureIO, gitIn } from '../helpers/fixtures.js';
import { clusterFixture, NO_NETWORK_CONFIG } from '../helpers/cluster-fixture.js';

/**
 * A commit made by the first command after `up`, with sync, is on the task branch when the command
 * returns (issue 19's lost commit). startContainer proves a pod's start by a command that runs in
 * its sandbox, up to a kubelet relist (a second, more under load) before the pod's status says
 * Running: a sync that took that status's word ("not running: its workspace went with it") brought
 * nothing home and said nothing, and the commit was lost with the pod (the eviction fault test).
 * Several rounds, since whether the status still lags is the node's timing.
 */
describe('moat on Kubernetes: a commit right after the start comes home', () => {
  const cluster = clusterFixture(NO_NETWORK_CONFIG);

  it('the first command commits with sync: the commit is on moat/<task>, with no warning, in every round', { timeout: 300_000 }, async () => {
    const { ns, scratch, moat } = cluster;
    let lagged = 0;
    const rounds = 6;
    for (let round = 0; round < rounds; round += 1) {
      const task = `c${round}`;
      await moat.up({ task });
      // What the pod's status says as the first command starts (not asserted: the node's timing).
      const [pod] = (await ns.core.listNamespacedPod({ namespace: ns.name, labelSelector: `moat.task=${task}` })).items;
      if (pod?.status?.phase !== 'Running' || !pod.status.containerStatuses?.some((c) => c.name === 'sandbox' && c.state?.running)) lagged += 1;
      const run = await moat.exec(task, ['sh', '-c', `echo ${round} > r.txt && git add r.txt && git commit -qm "round ${round}"`], captureIO().io, {
        sync: true,
      });
      expect(run.exitCode).toBe(0);
      expect(run.sync?.warning).toBeUndefined();
      expect(gitIn(scratch.repo, 'log', '--format=%s', '-1', `moat/${task}`)).toBe(`round ${round}`);
      await moat.rm(task, { force: true });
    }
    console.log(`commit-after-start: the pod's status lagged its proven start in ${lagged} of ${rounds} rounds`);
  });
});
