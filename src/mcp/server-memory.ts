/**
 * How the `moat mcp` server process keeps the memory it freed (glibc's malloc, set by
 * GLIBC_TUNABLES when load.ts starts it). A big read_file allocates a few megabytes (the bytes
 * read, the text, the message) and frees them when V8 collects; glibc gives memory of that size
 * back to the kernel (an mmap per allocation, and a trim of the heap's top), so the next read
 * faults every page in again: 500+ page faults per 1 MiB read in a server that idled between
 * reads (a client turning between servers, a model thinking), which made its read and decode
 * 1.5-2.5x slower than a server read again at once (measured: 22-35 ms against 14-15).
 * Allocations under 16 MiB from the heap and up to 64 MiB kept free at its top cut that to 330
 * faults and 13-19 ms (docs/benchmarks.md, issue 15's fourth pass). The cost: a server keeps up to that much freed memory.
 * Only glibc reads these; on another libc they are an unread variable.
 */
const TUNABLES = { 'glibc.malloc.mmap_threshold': String(16 * 1024 * 1024), 'glibc.malloc.trim_threshold': String(64 * 1024 * 1024) };

/** Where the client's own GLIBC_TUNABLES (if any) waits, so that the server's children get it back unchanged. */
export const CLIENT_TUNABLES = 'MOAT_MCP_CLIENT_GLIBC_TUNABLES';

/** The server process's environment: the caller's, with moat's tunables added to any it set (its own values win). */
export function serverEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const own = env.GLIBC_TUNABLES ?? '';
  const set = new Set(own.split(':').map((item) => item.split('=')[0]));
  const added = Object.entries(TUNABLES)
    .filter(([name]) => !set.has(name))
    .map(([name, value]) => `${name}=${value}`);
  return { ...env, GLIBC_TUNABLES: [own, ...added].filter(Boolean).join(':'), [CLIENT_TUNABLES]: own };
}

/** In the server, once started: the environment its commands (git, the engine's CLI) inherit is the client's again. */
export function restoreClientEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  if (!(CLIENT_TUNABLES in env)) return;
  const own = env[CLIENT_TUNABLES];
  delete env[CLIENT_TUNABLES];
  if (own) env.GLIBC_TUNABLES = own;
  else delete env.GLIBC_TUNABLES;
}
