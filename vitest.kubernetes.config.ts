import { defineConfig } from 'vitest/config';

/**
 * The Kubernetes phase of .ci/run: moat with `engine: kubernetes` against the one-node cluster of
 * scripts/cluster.sh (started first). Each file makes a namespace of its own and removes it.
 */
export default defineConfig({
  test: {
    include: ['test/kubernetes/**/*.test.ts'],
    globalSetup: ['test/kubernetes/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    maxWorkers: 2,
    minWorkers: 1,
    reporters: ['default', ['json', { outputFile: 'test-results/kubernetes-results.json' }]],
  },
});
