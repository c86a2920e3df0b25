import { defineConfig } from 'vitest/config';
import { ENGINE_SUITE_FILES } from './test/helpers/engine-suite.js';

/**
 * The Podman phase of .ci/run: the shared hardening, limits, containment, git-boundary, egress and
 * secrets files against rootful Podman (MOAT_ENGINE=podman MOAT_ENGINE_SOCKET=/run/podman/podman.sock,
 * scripts/setup-podman.sh rootful). test/podman (rootless, run as the user moatci) has its own run:
 * PODMAN_TESTS=rootless selects it.
 */
const rootless = process.env.PODMAN_TESTS === 'rootless';

export default defineConfig({
  test: {
    include: rootless ? ['test/podman/**/*.test.ts'] : ENGINE_SUITE_FILES,
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    minWorkers: 1,
    reporters: ['default', ['json', { outputFile: `test-results/podman-${rootless ? 'rootless' : 'rootful'}-results.json` }]],
  },
});
