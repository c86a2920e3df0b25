/**
 * Whether this run puts every task under gVisor (vitest.gvisor.config.ts sets MOAT_ISOLATION=gvisor).
 * Files shared with the runc run keep their runc assertions as they are and, under gVisor, assert
 * the gap docs/security.md states instead ("What holds under gVisor").
 */
export function underGvisor(): boolean {
  return process.env.MOAT_ISOLATION === 'gvisor';
}
