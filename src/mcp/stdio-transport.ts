import type { Readable, Writable } from 'node:stream';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { JSONRPCMessageSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/** Longest message line taken; a client sending more is answered with an error and the line is dropped. */
const MAX_LINE_BYTES = 32 * 1024 * 1024;

/**
 * MCP over stdio, one JSON-RPC message per line, as the SDK's own transport, with what a server
 * facing a hostile or broken client needs on top: a line that is not JSON gets a parse error
 * (-32700) and one that is not a JSON-RPC message an invalid-request error (-32600), as JSON-RPC
 * says, instead of silence; an over-long line is dropped with an error, and the end of stdin (the
 * client went away) closes the connection, which stops the calls still running.
 */
export class LineTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private chunks: Buffer[] = [];
  private size = 0;
  private skipping = false;
  private closed = false;

  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
  ) {}

  async start(): Promise<void> {
    this.input.on('data', this.onData);
    this.input.on('end', this.onEnd);
    this.input.on('close', this.onEnd);
    this.input.on('error', (error: Error) => this.onerror?.(error));
    this.output.on('error', () => this.onEnd());
  }

  private readonly onData = (chunk: Buffer): void => {
    let rest = chunk;
    for (let at = rest.indexOf(0x0a); at >= 0; at = rest.indexOf(0x0a)) {
      const piece = rest.subarray(0, at);
      rest = rest.subarray(at + 1);
      if (this.skipping) {
        this.skipping = false;
        continue;
      }
      const line = Buffer.concat([...this.chunks, piece])
        .toString('utf8')
        .replace(/\r$/, '');
      this.chunks = [];
      this.size = 0;
      if (line.trim() !== '') this.handleLine(line);
    }
    if (this.skipping || rest.length === 0) return;
    this.size += rest.length;
    if (this.size > MAX_LINE_BYTES) {
      this.chunks = [];
      this.size = 0;
      this.skipping = true;
      this.reply(null, -32600, `message longer than ${MAX_LINE_BYTES} bytes; dropped`);
      return;
    }
    this.chunks.push(Buffer.from(rest));
  };

  private handleLine(line: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      this.reply(null, -32700, 'parse error: the line is not JSON (one JSON-RPC message per line)');
      return;
    }
    const message = JSONRPCMessageSchema.safeParse(parsed);
    if (!message.success) {
      const id = (parsed as { id?: unknown } | null)?.id;
      this.reply(typeof id === 'string' || typeof id === 'number' ? id : null, -32600, 'invalid request: not a JSON-RPC 2.0 request, notification or response');
      return;
    }
    this.onmessage?.(message.data);
  }

  private reply(id: string | number | null, code: number, message: string): void {
    void this.write({ jsonrpc: '2.0', id, error: { code, message } });
  }

  private readonly onEnd = (): void => {
    void this.close();
  };

  send(message: JSONRPCMessage): Promise<void> {
    return this.write(message);
  }

  private write(message: unknown): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      let ok = true;
      for (const piece of jsonLine(message)) ok = this.output.write(piece);
      if (ok) resolve();
      else this.output.once('drain', resolve);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.input.off('data', this.onData);
    this.input.pause();
    this.onclose?.();
  }
}

/** Strings this long are written a slice at a time (jsonLine). */
const LONG_STRING = 256 * 1024;
/** Characters per slice: its JSON (of most text) fits one of V8's regular heap pages. */
const SLICE = 32 * 1024;

/**
 * `JSON.stringify(message) + '\n'` as pieces to write one after another: the same characters,
 * so the same bytes on the wire, but a string of LONG_STRING or more (read_file's content) is
 * escaped a slice at a time instead of inside one string of the whole message. V8 puts a string
 * over ~128 KiB on large-object pages mapped for it alone and unmapped after the next collection,
 * so a 1 MiB message cost ~256 page faults (30-37 µs each on the VMs measured) on every read; the
 * slices live in the young generation, whose pages are reused. A slice never ends between the two
 * halves of a surrogate pair (JSON.stringify escapes a lone half, not a pair).
 */
export function* jsonLine(message: unknown): Generator<string> {
  const long: string[] = [];
  const mark = `\u0000moat-long-${Math.random().toString(36).slice(2)}\u0000`;
  const line = JSON.stringify(message, (_key, value: unknown) => {
    if (typeof value !== 'string' || value.length < LONG_STRING) return value;
    long.push(value);
    return mark;
  });
  if (long.length === 0) {
    yield `${line}\n`;
    return;
  }
  // The mark as JSON.stringify wrote it (its NULs escaped): nothing else in the line can be it.
  const quoted = JSON.stringify(mark);
  let from = 0;
  for (const value of long) {
    const at = line.indexOf(quoted, from);
    yield `${line.slice(from, at)}"`;
    for (let start = 0; start < value.length;) {
      let end = Math.min(start + SLICE, value.length);
      const last = value.charCodeAt(end - 1);
      if (end < value.length && last >= 0xd800 && last <= 0xdbff) end -= 1;
      yield JSON.stringify(value.slice(start, end)).slice(1, -1);
      start = end;
    }
    yield '"';
    from = at + quoted.length;
  }
  yield `${line.slice(from)}\n`;
}
