import { defineConfig } from 'vitest/config';

/**
 * The node-not-Ready fault (test/kubernetes/node-not-ready.test.ts): it stops the one node's
 * kubelet, so it runs alone, last in the Kubernetes phase of .ci/run (on the same cluster, after
 * the other files).
 */
export default defineConfig({
  test: {
    include: ['test/kubernetes/node-not-ready.test.ts'],
    globalSetup: ['test/kubernetes/global-setup.ts'],
    testTimeout: 420_000,
    hookTimeout: 180_000,
    maxWorkers: 1,
    minWorkers: 1,
    reporters: ['default', ['json', { outputFile: 'test-results/kubernetes-node-results.json' }]],
  },
});
