import { defineConfig } from 'vitest/config';

/**
 * The gVisor phase of .ci/run: test/gvisor, plus the hardening, containment and egress files with every
 * task under gVisor (MOAT_ISOLATION=gvisor, which the tests' moat instances inherit). Where gVisor
 * differs from runc those files assert the stated gap (underGvisor() in test/helpers/gvisor.ts).
 */
export default defineConfig({
  test: {
    include: ['test/gvisor/**/*.test.ts', 'test/integration/hardening.test.ts', 'test/integration/containment.test.ts', 'test/security/egress.test.ts'],
    env: { MOAT_ISOLATION: 'gvisor' },
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    minWorkers: 1,
    reporters: ['default', ['json', { outputFile: 'test-results/gvisor-results.json' }]],
  },
});
