import { createServer, type Server } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * A scripted model for end-to-end tests: a small server speaking the OpenAI Responses API, OpenAI
 * Chat Completions (what OpenAI-compatible providers speak), the Anthropic Messages API (streaming or not) and the Gemini API (generateContent and
 * streamGenerateContent), each in its own wire format, that plays a fixed conversation of shell
 * tool calls. Turn N (the number of tool results the client has sent back) gets step N of the
 * script; after the last step it answers with a final message (`answer`). It adapts the call's
 * arguments to the shell tool the client declares, and records every request. With `fail`, every
 * model request gets that HTTP status instead (a 401 for a bad key, a 429 for a rate limit).
 */
export interface ModelRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

/**
 * A Responses-API step that calls a tool the client declared (an MCP server's, in its namespace)
 * instead of a shell command; `args` may be computed from the conversation so far (a name an
 * earlier tool result gave).
 */
export interface ToolStep {
  tool: string;
  namespace?: string;
  args: Record<string, unknown> | ((input: unknown[]) => Record<string, unknown>);
}

type Tool = { type?: string; name?: string; parameters?: { properties?: Record<string, { type?: string }> } };

function shellCall(tools: Tool[], command: string): { name: string; arguments: string } {
  const tool = tools.find((t) => t.type === 'function' && /shell|exec/.test(t.name ?? '')) ?? {
    name: 'shell',
    parameters: { properties: { command: { type: 'array' } } },
  };
  const props = tool.parameters?.properties ?? {};
  if (props.cmd) return { name: tool.name!, arguments: JSON.stringify({ cmd: command }) };
  if (props.command?.type === 'string') return { name: tool.name!, arguments: JSON.stringify({ command }) };
  return { name: tool.name!, arguments: JSON.stringify({ command: ['bash', '-lc', command] }) };
}

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify({ type: event, ...(data as object) })}\n\n`;
}

/** A request for a model turn in any of the three APIs. */
// Anchored: a route that forwards to the wrong path must not find a model here.
const TURN = /^\/v1\/responses$|^\/v1\/chat\/completions$|^\/v1\/messages(\?|$)|^\/v1beta\/models\/[^/?]+:(generateContent|streamGenerateContent)(\?|$)/;

export class ScriptedModel {
  readonly requests: ModelRequest[] = [];
  private server?: Server;
  port = 0;

  constructor(
    private readonly steps: string[],
    private readonly tls: { key: Buffer; cert: Buffer },
    private readonly options: { answer?: string; fail?: number; calls?: ToolStep[] } = {},
  ) {}

  /** Requests that asked the model for a turn (not model listings or token counts). */
  turns(): ModelRequest[] {
    return this.requests.filter((r) => TURN.test(r.url));
  }

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
        const url = req.url ?? '';
        const isTurn = TURN.test(url);
        if (isTurn && this.options.fail) {
          res.writeHead(this.options.fail, { 'content-type': 'application/json' });
          return res.end(JSON.stringify(errorBody(url, this.options.fail)));
        }
        if (isTurn && url.startsWith('/v1/messages')) return anthropicTurn(res, body, this.steps, this.answer);
        if (isTurn && url === '/v1/chat/completions') return chatTurn(res, body, this.steps, this.answer);
        if (isTurn && url.startsWith('/v1beta/')) return geminiTurn(res, url, body, this.steps, this.answer);
        if (!isTurn) {
          res.setHeader('content-type', 'application/json');
          return res.end(JSON.stringify({ object: 'list', data: [] }));
        }
        const request = (body ?? {}) as { input?: Array<{ type?: string; tools?: Array<{ tools?: Tool[] }> }>; tools?: Tool[] };
        const turn = (request.input ?? []).filter((item) => item.type === 'function_call_output' || item.type === 'custom_tool_call_output').length;
        // Newer Codex declares its tools in an input item and runs shell commands from a JavaScript
        // "exec" tool (code mode); older ones take a function tool named like shell.
        const declared = (request.input ?? [])
          .filter((item) => item.type === 'additional_tools')
          .flatMap((item) => (item.tools ?? []).flatMap((ns) => ns.tools ?? []));
        const codeMode = declared.some((tool) => tool.type === 'custom' && tool.name === 'exec');
        const id = `resp_${this.requests.length}`;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write(sse('response.created', { response: { id } }));
        const call = this.options.calls?.[turn];
        const item = call
          ? {
              type: 'function_call',
              id: `fc_${turn}`,
              call_id: `call_${turn}`,
              status: 'completed',
              name: call.tool,
              ...(call.namespace ? { namespace: call.namespace } : {}),
              arguments: JSON.stringify(typeof call.args === 'function' ? call.args(request.input ?? []) : call.args),
            }
          : turn < this.steps.length
            ? codeMode
              ? {
                  type: 'custom_tool_call',
                  id: `ctc_${turn}`,
                  call_id: `call_${turn}`,
                  status: 'completed',
                  name: 'exec',
                  input: `const r = await tools.exec_command({ cmd: ${JSON.stringify(this.steps[turn]!)}, yield_time_ms: 20000 });\ntext(r.output);\n`,
                }
              : {
                  type: 'function_call',
                  id: `fc_${turn}`,
                  call_id: `call_${turn}`,
                  status: 'completed',
                  ...shellCall([...(request.tools ?? []), ...declared], this.steps[turn]!),
                }
            : {
                type: 'message',
                id: `msg_${turn}`,
                role: 'assistant',
                status: 'completed',
                content: [{ type: 'output_text', text: this.answer, annotations: [] }],
              };
        res.write(sse('response.output_item.added', { output_index: 0, item }));
        res.write(sse('response.output_item.done', { output_index: 0, item }));
        res.write(
          sse('response.completed', {
            response: {
              id,
              usage: {
                input_tokens: 10,
                input_tokens_details: { cached_tokens: 0 },
                output_tokens: 5,
                output_tokens_details: { reasoning_tokens: 0 },
                total_tokens: 15,
              },
            },
          }),
        );
        res.end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  private get answer(): string {
    return this.options.answer ?? 'All steps done.';
  }

  stop(): void {
    this.server?.close();
  }
}

function errorBody(url: string, status: number): unknown {
  const message = status === 401 ? 'invalid x-api-key' : status === 429 ? 'rate limited by the scripted model' : `scripted failure ${status}`;
  if (/:(generateContent|streamGenerateContent)/.test(url))
    return { error: { code: status, message, status: status === 401 ? 'UNAUTHENTICATED' : 'RESOURCE_EXHAUSTED' } };
  if (url.includes('/v1/messages')) return { type: 'error', error: { type: status === 401 ? 'authentication_error' : 'rate_limit_error', message } };
  return {
    error: {
      message,
      type: status === 401 ? 'invalid_request_error' : 'rate_limit_exceeded',
      code: status === 401 ? 'invalid_api_key' : 'rate_limit_exceeded',
    },
  };
}

type AnthropicBlock = { type?: string };
type AnthropicRequest = { stream?: boolean; model?: string; tools?: Array<{ name?: string }>; messages?: Array<{ content?: string | AnthropicBlock[] }> };

/** Anthropic Messages: a Bash tool_use block per step (when the client offers a Bash tool), then text. */
function anthropicTurn(res: import('node:http').ServerResponse, body: unknown, steps: string[], answer: string): void {
  const request = (body ?? {}) as AnthropicRequest;
  const turn = (request.messages ?? []).flatMap((m) => (typeof m.content === 'string' ? [] : (m.content ?? []))).filter((b) => b.type === 'tool_result').length;
  const bash = (request.tools ?? []).find((t) => t.name === 'Bash');
  const id = `msg_${turn}_${Date.now()}`;
  const block =
    bash && turn < steps.length
      ? { type: 'tool_use', id: `toolu_${turn}`, name: 'Bash', input: { command: steps[turn]!, description: `step ${turn}` } }
      : { type: 'text', text: bash ? answer : 'ok' };
  const stop = block.type === 'tool_use' ? 'tool_use' : 'end_turn';
  const usage = { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
  if (!request.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    return void res.end(
      JSON.stringify({
        id,
        type: 'message',
        role: 'assistant',
        model: request.model ?? 'claude-scripted',
        content: [block],
        stop_reason: stop,
        stop_sequence: null,
        usage,
      }),
    );
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const event = (type: string, data: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  event('message_start', {
    message: {
      id,
      type: 'message',
      role: 'assistant',
      model: request.model ?? 'claude-scripted',
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...usage, output_tokens: 1 },
    },
  });
  if (block.type === 'tool_use') {
    event('content_block_start', { index: 0, content_block: { ...block, input: {} } });
    event('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify((block as { input: object }).input) } });
  } else {
    event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: (block as { text: string }).text } });
  }
  event('content_block_stop', { index: 0 });
  event('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 5 } });
  event('message_stop', {});
  res.end();
}

type GeminiPart = { text?: string; functionCall?: unknown; functionResponse?: unknown };
type GeminiRequest = {
  generationConfig?: { responseMimeType?: string };
  contents?: Array<{ parts?: GeminiPart[] }>;
  tools?: Array<{ functionDeclarations?: Array<{ name?: string; parameters?: unknown; parametersJsonSchema?: unknown }> }>;
};

/** Gemini: a functionCall to the client's shell tool per step, then text; streamed as SSE when asked (alt=sse). */
function geminiTurn(res: import('node:http').ServerResponse, url: string, body: unknown, steps: string[], answer: string): void {
  const request = (body ?? {}) as GeminiRequest;
  const turn = (request.contents ?? []).flatMap((c) => c.parts ?? []).filter((p) => p.functionResponse !== undefined).length;
  const shell = (request.tools ?? []).flatMap((t) => t.functionDeclarations ?? []).find((f) => /shell/.test(f.name ?? ''));
  // Side requests for JSON (the CLI's model router, its checks of whose turn it is) get JSON.
  const json = request.generationConfig?.responseMimeType === 'application/json';
  const side = json
    ? JSON.stringify({ reasoning: 'scripted', model_choice: 'flash', complexity_reasoning: 'scripted', complexity_score: 10, next_speaker: 'user' })
    : 'ok';
  const part =
    shell && turn < steps.length
      ? { functionCall: { name: shell.name, args: { command: steps[turn]!, description: `step ${turn}` } } }
      : { text: shell ? answer : side };
  const chunk = {
    candidates: [{ content: { role: 'model', parts: [part] }, finishReason: 'STOP', index: 0 }],
    usageMetadata: { promptTokenCount: 10, candidatesTokenCount: 5, totalTokenCount: 15 },
    modelVersion: 'gemini-scripted',
  };
  if (url.includes(':streamGenerateContent')) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    return void res.end(`data: ${JSON.stringify(chunk)}\r\n\r\n`);
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(chunk));
}

type ChatRequest = {
  stream?: boolean;
  model?: string;
  tools?: Array<{ type?: string; function?: { name?: string } }>;
  messages?: Array<{ role?: string }>;
};

/**
 * OpenAI Chat Completions: a call to the client's shell tool (OpenCode's is "bash") per step, then
 * text; streamed as server-sent chunks ending in [DONE] when asked. A request without that tool (a
 * title for the session) gets a short text.
 */
function chatTurn(res: import('node:http').ServerResponse, body: unknown, steps: string[], answer: string): void {
  const request = (body ?? {}) as ChatRequest;
  const turn = (request.messages ?? []).filter((m) => m.role === 'tool').length;
  const shell = (request.tools ?? []).map((t) => t.function?.name ?? '').find((name) => /^(bash|shell)$/.test(name));
  const id = `chatcmpl_${turn}_${Date.now()}`;
  const call =
    shell && turn < steps.length
      ? {
          index: 0,
          id: `call_${turn}`,
          type: 'function',
          function: { name: shell, arguments: JSON.stringify({ command: steps[turn]!, description: `step ${turn}` }) },
        }
      : undefined;
  const text = shell ? answer : 'Scripted session';
  const finish = call ? 'tool_calls' : 'stop';
  const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };
  const base = { id, created: Math.floor(Date.now() / 1000), model: request.model ?? 'gpt-scripted' };
  if (!request.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    const message = call ? { role: 'assistant', content: null, tool_calls: [call] } : { role: 'assistant', content: text };
    return void res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message, finish_reason: finish }], usage }));
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const chunk = (choice: object, extra: object = {}) =>
    res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, ...choice }], ...extra })}\n\n`);
  chunk({ delta: call ? { role: 'assistant', content: null, tool_calls: [call] } : { role: 'assistant', content: text }, finish_reason: null });
  chunk({ delta: {}, finish_reason: finish }, { usage });
  res.end('data: [DONE]\n\n');
}
