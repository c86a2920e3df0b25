/**
 * The shared security and containment files every other engine configuration runs (the remote
 * engine's phase, Podman's): what must hold on any engine moat supports.
 */
export const ENGINE_SUITE_FILES = [
  'test/integration/hardening.test.ts',
  'test/integration/limits.test.ts',
  'test/integration/containment.test.ts',
  'test/security/git-boundary.test.ts',
  'test/security/egress.test.ts',
  'test/security/secrets.test.ts',
];
