import { configDefaults, defineConfig } from 'vitest/config';

/**
 * The Kubernetes phase of .ci/run: moat with `engine: kubernetes` against the one-node cluster of
 * scripts/cluster.sh (started first). Each file makes a namespace of its own and removes it.
 */
export default defineConfig({
  test: {
    include: ['test/kubernetes/**/*.test.ts'],
    // It stops the node's kubelet, which every other file needs: vitest.kubernetes-node.config.ts runs it alone.
    exclude: [...configDefaults.exclude, 'test/kubernetes/node-not-ready.test.ts'],
    globalSetup: ['test/kubernetes/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    maxWorkers: 2,
    minWorkers: 1,
    reporters: ['default', ['json', { outputFile: 'test-results/kubernetes-results.json' }]],
  },
});
