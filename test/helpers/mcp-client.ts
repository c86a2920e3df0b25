import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { MOAT_BIN, type Scratch } from './fixtures.js';

/** The SDK's own client, over a real stdio pipe, to `node bin/moat.js mcp` in a scratch repository. */
export async function mcpClient(
  scratch: Scratch,
  env: Record<string, string> = {},
): Promise<{ client: Client; stderr: () => string; close: () => Promise<void> }> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [MOAT_BIN, 'mcp'],
    cwd: scratch.repo,
    env: scratch.env(env) as Record<string, string>,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const client = new Client({ name: 'moat-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, stderr: () => stderr, close: () => client.close() };
}

/** A tool's result as text (all its text parts) and data; the call fails the test on a JSON-RPC error. */
export async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  options: { onprogress?: (p: { progress: number; message?: string }) => void } = {},
) {
  const result = (await client.callTool({ name, arguments: args }, undefined, {
    timeout: 300_000,
    onprogress: options.onprogress,
    resetTimeoutOnProgress: true,
  })) as CallToolResult;
  const text = result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
  // read_file sends its content once, as the first text item, and its data in _meta (src/mcp/server.ts).
  const meta = result._meta?.['moat/result'] as Record<string, any> | undefined;
  const first = result.content[0];
  const data = result.structuredContent ?? (meta ? { ...meta, content: first?.type === 'text' ? first.text : undefined } : undefined);
  return { text, data: data as Record<string, any>, isError: result.isError === true };
}

/** Characters that must never reach a client raw from the sandbox: ESC, other controls but \n and \t, bidi, zero-width. */
export const RAW_UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/;
