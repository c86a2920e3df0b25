// A stand-in for `moat mcp`'s read_file, for bench/mcp-alternate.js: moat's own parts of the
// answer (the SDK Server, LineTransport, fitContent, SafeText) from the build in MOAT_DIST,
// reading a host file; no engine, no task. After each read it writes to stderr the page faults
// the read took (read, decode, measure, escape), which bench/mcp-alternate.js collects. A call
// named `git` runs `git --version` BENCH_GIT_RUNS times (8) through moat's runProcess, as a
// diff_task's git does; with MOAT_STANDIN_SPAWNER=on from the MCP server's helper process
// (src/workspace/spawner.ts), as `moat mcp` starts them (bench/mcp-fork-standin.js).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = process.env.MOAT_DIST;
const load = (path) => import(pathToFileURL(join(dist, path)).href);
const { Server } = await import('@modelcontextprotocol/sdk/server/index.js');
const { CallToolRequestSchema } = await import('@modelcontextprotocol/sdk/types.js');
const { LineTransport } = await load('mcp/stdio-transport.js');
const { fitContent } = await load('mcp/result-budget.js');
const { SafeText } = await load('mcp/safe-text.js');
const safe = new SafeText(new Set());
const { runProcess } = await load('workspace/run-process.js');
if (process.env.MOAT_STANDIN_SPAWNER === 'on') (await load('workspace/spawner.js')).startProgramsFromHelper();
const server = new Server({ name: 'moat-standin', version: '1' }, { capabilities: { tools: {} } });
server.setRequestHandler(CallToolRequestSchema, async (request) => {
  if (request.params.name === 'git') {
    for (let i = 0; i < Number(process.env.BENCH_GIT_RUNS ?? 8); i += 1) await runProcess('git', ['--version'], { cwd: '/', env: { PATH: process.env.PATH } });
    return { content: [{ type: 'text', text: 'ran' }] };
  }
  const before = process.resourceUsage().minorPageFault;
  const bytes = readFileSync(request.params.arguments.path);
  const { content, used } = fitContent(bytes, 'text');
  const text = safe.lines(content);
  process.stderr.write(`faults ${process.resourceUsage().minorPageFault - before}\n`);
  const meta = { path: request.params.arguments.path, size: bytes.length, truncated: false, encoding: 'text', shown: used };
  return {
    content: [
      { type: 'text', text },
      { type: 'text', text: `(${bytes.length} bytes)` },
    ],
    _meta: { 'moat/result': meta },
  };
});
await server.connect(new LineTransport(process.stdin, process.stdout));
