import { defineConfig } from 'vitest/config';
import { ENGINE_SUITE_FILES } from './test/helpers/engine-suite.js';

/**
 * The remote-engine phase of .ci/run (DOCKER_HOST=tcp://127.0.0.1:23750): these files run against
 * an engine that shares neither moat's filesystem nor its network, plus test/remote (which the
 * local run leaves out: it needs such an engine).
 */
export default defineConfig({
  test: {
    include: ['test/remote/**/*.test.ts', ...ENGINE_SUITE_FILES],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    minWorkers: 1,
    reporters: ['default', ['json', { outputFile: 'test-results/remote-results.json' }]],
  },
});
