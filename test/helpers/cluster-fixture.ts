import { afterAll, beforeAll } from 'vitest';
import type { Moat } from '../../src/index.js';
import { ClusterScratch, testNamespace } from './kubernetes.js';

// Apart from kubernetes.ts: the suites' global setup imports that one, and may not import vitest.

/** A moat config for a test file's tasks: the cluster's pods carry no process limit, and no network. */
export const NO_NETWORK_CONFIG = 'acceptUnenforcedLimits: [pids]\nnetwork: none\n';

/**
 * A test file's namespace and scratch home on the cluster, with `config` as its moat config and a
 * moat client of it: made before the file's tests, removed after them (also when one failed). The
 * file's own afterAll hooks, registered after this call, run before this removal (vitest runs
 * after-hooks as a stack). Its fields are set once the tests run.
 */
export function clusterFixture(config: string): { ns: Awaited<ReturnType<typeof testNamespace>>; scratch: ClusterScratch; moat: Moat } {
  const fixture = {} as ReturnType<typeof clusterFixture>;
  beforeAll(async () => {
    fixture.ns = await testNamespace();
    fixture.scratch = new ClusterScratch(fixture.ns.name);
    fixture.scratch.writeConfig(config);
    fixture.moat = fixture.scratch.moat();
  });
  afterAll(async () => {
    await fixture.scratch?.cleanup();
    await fixture.ns?.remove();
  });
  return fixture;
}
