import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/remote needs a remote engine: .ci/run's remote phase runs it (vitest.remote.config.ts).
    // test/nonroot runs as a docker-group user: .ci/run's non-root phase (vitest.nonroot.config.ts).
    // test/gvisor needs runsc registered: .ci/run's gvisor phase runs it (vitest.gvisor.config.ts).
    // test/podman needs rootless Podman as a non-root user (vitest.podman.config.ts, .ci/run's podman phase).
    // test/cluster needs the Kubernetes cluster of scripts/cluster.sh (vitest.cluster.config.ts, .ci/run's kubernetes phase).
    exclude: [...configDefaults.exclude, 'test/remote/**', 'test/nonroot/**', 'test/gvisor/**', 'test/podman/**', 'test/cluster/**', 'test/kubernetes/**'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: integration files each start containers; more workers only add contention.
    maxWorkers: 2,
    minWorkers: 1,
    // The JSON report lets .ci/run print a plain 'N passed, N failed' line.
    reporters: ['default', ['json', { outputFile: 'test-results/results.json' }]],
  },
});
