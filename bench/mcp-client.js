// One MCP client of bench/mcp.js: the SDK's own client over a real stdio pipe to `moat mcp`, in a
// process of its own (run with fork(); asked over IPC), or, with BENCH_MCP_CLIENTS=shared, in the
// bench's process as before.
//
// Why a process of its own (issue 15, fifth pass, docs/benchmarks.md): a process that forks (the
// bench's `docker exec` timings, spawnSync) has every page of its memory write-protected after
// it (copy on write), and the next 1 MiB answer its client takes in (the SDK's ReadBuffer
// concatenates its buffer at each 64 KiB pipe read: ~10 MB written) takes ~3,000 minor page faults
// instead of ~600: 40-80 ms more, in the bench's process, not the server's. An MCP client such as
// an editor or an agent does not fork a docker CLI between two tool calls; the bench did, between
// every two rounds. The time is taken here, around callTool, as the client sees it; the IPC to
// the bench is outside it.
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

/** A client connected to `node <moat> mcp` in `cwd`: call(name, args) gives the call's time as the client saw it and its result's data. */
export async function mcpClient(moat, cwd, env) {
  const client = new Client({ name: 'moat-bench', version: '1' });
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [moat, 'mcp'], cwd, env, stderr: 'inherit' }));
  return {
    async call(name, args) {
      const faults = process.resourceUsage().minorPageFault;
      const start = performance.now();
      const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 600_000 });
      const ms = performance.now() - start;
      if (result.isError) throw new Error(`${name}: ${result.content.map((c) => c.text).join(' ')}`);
      // read_file: the content is the first text item, its data in _meta; only its length goes back.
      const value = result.structuredContent ?? { ...result._meta['moat/result'], contentLength: result.content[0].text.length };
      return { ms, value, faults: process.resourceUsage().minorPageFault - faults };
    },
    close: () => client.close(),
  };
}

// Run as a child: one client per process, driven by the bench over IPC.
if (process.send && process.argv[2] === 'child') {
  let client;
  // The bench gone (done or failed): leave, which closes the server's stdin, so it leaves too.
  process.on('disconnect', () => process.exit(0));
  process.on('message', async ({ id, op, moat, cwd, env, name, args }) => {
    try {
      if (op === 'connect') client = await mcpClient(moat, cwd, env);
      const value = op === 'call' ? await client.call(name, args) : undefined;
      if (op === 'close') await client.close();
      process.send({ id, value });
    } catch (error) {
      process.send({ id, error: String(error?.stack ?? error) });
    }
  });
}
