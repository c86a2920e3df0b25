import { defineConfig } from 'vitest/config';

/**
 * The Kubernetes phase of .ci/run: test/cluster against the one-node 1.20 cluster of
 * scripts/cluster.sh (started before, stopped after). Not in the default suite: it needs that cluster.
 */
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    maxWorkers: 1,
    minWorkers: 1,
    reporters: ['default', ['json', { outputFile: 'test-results/cluster-results.json' }]],
  },
});
