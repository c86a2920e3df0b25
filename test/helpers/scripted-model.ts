import { createServer, type Server } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * A scripted model for end-to-end tests: a small OpenAI Responses API server that streams a fixed
 * conversation of shell tool calls. Turn N (the number of tool results the client has sent back)
 * gets step N of the script; after the last step it answers with a final message. It adapts the
 * call's arguments to the shell tool the client declares, and records every request.
 */
export interface ModelRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

type Tool = { type?: string; name?: string; parameters?: { properties?: Record<string, { type?: string }> } };

function shellCall(tools: Tool[], command: string): { name: string; arguments: string } {
  const tool = tools.find((t) => t.type === 'function' && /shell|exec/.test(t.name ?? '')) ?? { name: 'shell', parameters: { properties: { command: { type: 'array' } } } };
  const props = tool.parameters?.properties ?? {};
  if (props.cmd) return { name: tool.name!, arguments: JSON.stringify({ cmd: command }) };
  if (props.command?.type === 'string') return { name: tool.name!, arguments: JSON.stringify({ command }) };
  return { name: tool.name!, arguments: JSON.stringify({ command: ['bash', '-lc', command] }) };
}

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify({ type: event, ...(data as object) })}\n\n`;
}

export class ScriptedModel {
  readonly requests: ModelRequest[] = [];
  private server?: Server;
  port = 0;

  constructor(private readonly steps: string[], private readonly tls: { key: Buffer; cert: Buffer }) {}

  async start(): Promise<void> {
    this.server = createServer(this.tls, (req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c));
      req.on('end', () => {
        let body: unknown = raw;
        try {
          body = raw ? JSON.parse(raw) : undefined;
        } catch {
          // keep raw
        }
        this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        if (!req.url?.endsWith('/responses')) {
          res.setHeader('content-type', 'application/json');
          return res.end(JSON.stringify({ object: 'list', data: [] }));
        }
        const request = (body ?? {}) as { input?: Array<{ type?: string; tools?: Array<{ tools?: Tool[] }> }>; tools?: Tool[] };
        const turn = (request.input ?? []).filter((item) => item.type === 'function_call_output' || item.type === 'custom_tool_call_output').length;
        // Newer Codex declares its tools in an input item and runs shell commands from a JavaScript
        // "exec" tool (code mode); older ones take a function tool named like shell.
        const declared = (request.input ?? []).filter((item) => item.type === 'additional_tools').flatMap((item) => (item.tools ?? []).flatMap((ns) => ns.tools ?? []));
        const codeMode = declared.some((tool) => tool.type === 'custom' && tool.name === 'exec');
        const id = `resp_${this.requests.length}`;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write(sse('response.created', { response: { id } }));
        const item =
          turn < this.steps.length
            ? codeMode
              ? { type: 'custom_tool_call', id: `ctc_${turn}`, call_id: `call_${turn}`, status: 'completed', name: 'exec', input: `const r = await tools.exec_command({ cmd: ${JSON.stringify(this.steps[turn]!)}, yield_time_ms: 20000 });\ntext(r.output);\n` }
              : { type: 'function_call', id: `fc_${turn}`, call_id: `call_${turn}`, status: 'completed', ...shellCall([...(request.tools ?? []), ...declared], this.steps[turn]!) }
            : { type: 'message', id: `msg_${turn}`, role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'All steps done.', annotations: [] }] };
        res.write(sse('response.output_item.added', { output_index: 0, item }));
        res.write(sse('response.output_item.done', { output_index: 0, item }));
        res.write(sse('response.completed', { response: { id, usage: { input_tokens: 10, input_tokens_details: { cached_tokens: 0 }, output_tokens: 5, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 15 } } }));
        res.end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  stop(): void {
    this.server?.close();
  }
}
