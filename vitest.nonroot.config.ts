import { defineConfig } from 'vitest/config';

/**
 * The non-root phase of .ci/run: these files run as `moatci`, a member of the docker group and
 * nothing more (scripts/test-user.sh), with the engine-made disk cap (test/nonroot, which the
 * root run leaves out) and the hardening, limits, containment and git-boundary files.
 */
export default defineConfig({
  test: {
    include: [
      'test/nonroot/**/*.test.ts',
      'test/integration/hardening.test.ts',
      'test/integration/limits.test.ts',
      'test/integration/containment.test.ts',
      'test/security/git-boundary.test.ts',
    ],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    minWorkers: 1,
    reporters: ['default', ['json', { outputFile: 'test-results/nonroot-results.json' }]],
  },
});
