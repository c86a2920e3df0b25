// child: a bare MCP server (SDK Server + moat's LineTransport) answering one tool with a read_file-like result.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
if (process.argv[2] === 'child') {
  const { Server } = await import('@modelcontextprotocol/sdk/server/index.js');
  const { CallToolRequestSchema, ListToolsRequestSchema } = await import('@modelcontextprotocol/sdk/types.js');
  const { LineTransport } = await import('../dist/mcp/stdio-transport.js');
  const { SafeText } = await import('../dist/mcp/safe-text.js');
  const { fitContent } = await import('../dist/mcp/result-budget.js');
  const bytes = Buffer.from(randomBytes(786432).toString('base64').replace(/(.{76})/g, '$1\n').slice(0, 1048576));
  const server = new Server({ name: 'p', version: '1' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [] }));
  const once = process.argv[3] === 'once';
  server.setRequestHandler(CallToolRequestSchema, async () => {
    const safe = new SafeText(new Set());
    const { content } = fitContent(bytes, 'text');
    const data = safe.value({ path: '/workspace/big', size: 1048576, truncated: false, encoding: 'text', content: once ? undefined : content });
    return { content: [{ type: 'text', text: safe.lines(content) }, { type: 'text', text: 'note' }], structuredContent: data };
  });
  await server.connect(new LineTransport(process.stdin, process.stdout));
} else {
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
  const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');
  for (const mode of ['twice', 'once', 'twice', 'once']) {
    const client = new Client({ name: 'c', version: '1' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [process.argv[1], 'child', mode], stderr: 'inherit' }));
    const xs = [];
    for (let i = 0; i < 8; i++) {
      const t = process.hrtime.bigint();
      await client.callTool({ name: 'x', arguments: {} });
      xs.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    xs.sort((a, b) => a - b);
    console.log(mode, 'median', xs[4].toFixed(0), 'all', xs.map((x) => x.toFixed(0)).join(' '));
    await client.close();
  }
}
