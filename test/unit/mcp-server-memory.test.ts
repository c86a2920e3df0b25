import { describe, expect, it } from 'vitest';
import { CLIENT_TUNABLES, restoreClientEnvironment, serverEnvironment } from '../../src/mcp/server-memory.js';

/** The server keeps the memory a big read freed (glibc tunables), and hands its children the client's environment back. */
describe('moat mcp server memory tunables', () => {
  it("adds moat's malloc thresholds, keeping the client's own settings and values", () => {
    const plain = serverEnvironment({ PATH: '/bin' });
    expect(plain.GLIBC_TUNABLES).toBe('glibc.malloc.mmap_threshold=16777216:glibc.malloc.trim_threshold=67108864');
    expect(plain.PATH).toBe('/bin');
    const own = serverEnvironment({ GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=1:glibc.pthread.rseq=0' });
    expect(own.GLIBC_TUNABLES).toBe('glibc.malloc.trim_threshold=1:glibc.pthread.rseq=0:glibc.malloc.mmap_threshold=16777216');
  });

  it('gives the children the environment the client gave, with or without its own tunables', () => {
    for (const client of [{ PATH: '/bin' }, { PATH: '/bin', GLIBC_TUNABLES: 'glibc.pthread.rseq=0' }]) {
      const env = serverEnvironment(client);
      expect(env[CLIENT_TUNABLES]).toBeDefined();
      restoreClientEnvironment(env);
      expect(env).toEqual(client);
    }
    const untouched: NodeJS.ProcessEnv = { GLIBC_TUNABLES: 'x=1' };
    restoreClientEnvironment(untouched);
    expect(untouched).toEqual({ GLIBC_TUNABLES: 'x=1' });
  });
});
