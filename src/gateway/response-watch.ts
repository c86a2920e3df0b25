/**
 * Watches the bytes of one HTTP/1.1 response as they pass through a route, without changing them,
 * to learn its status and whether it arrived whole. An agent whose provider answered 401, 429 or
 * cut a stream short often fails with a message of its own that hides the cause (or none at all);
 * the gateway is the one place that saw the answer, so it records it in the audit line and
 * `moat agent` can say it in one line.
 *
 * Framing follows RFC 9112 §6: no body for HEAD, 1xx, 204 and 304; else chunked, else
 * Content-Length, else until the connection closes (then "whole" cannot be told and is assumed).
 */
export class ResponseWatch {
  /** The final status (1xx interim responses skipped), once its line arrived. */
  status?: number;
  private head = Buffer.alloc(0);
  private state: 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers' | 'close' | 'done' | 'broken' = 'head';
  private left = 0;
  private line = '';

  constructor(private readonly method: string) {}

  /**
   * True when the response is not whole: the connection ended before the status line or before
   * the body its framing announced. A response whose framing could not be read counts as whole:
   * moat says what it saw, never what it guessed.
   */
  get cut(): boolean {
    return this.state !== 'done' && this.state !== 'close' && this.state !== 'broken';
  }

  feed(chunk: Buffer): void {
    let data = chunk;
    while (data.length > 0 && this.state !== 'done' && this.state !== 'close' && this.state !== 'broken') data = this.step(data);
  }

  private step(data: Buffer): Buffer {
    switch (this.state) {
      case 'head':
        return this.readHead(data);
      case 'length': {
        const take = Math.min(this.left, data.length);
        this.left -= take;
        if (this.left === 0) this.state = 'done';
        return data.subarray(take);
      }
      case 'chunk-data': {
        const take = Math.min(this.left, data.length);
        this.left -= take;
        if (this.left === 0) {
          this.state = 'chunk-crlf';
          this.left = 2;
        }
        return data.subarray(take);
      }
      case 'chunk-crlf': {
        const take = Math.min(this.left, data.length);
        this.left -= take;
        if (this.left === 0) this.state = 'chunk-size';
        return data.subarray(take);
      }
      case 'chunk-size':
      case 'trailers':
        return this.readLine(data);
      default:
        return Buffer.alloc(0);
    }
  }

  private readHead(data: Buffer): Buffer {
    const joined = Buffer.concat([this.head, data]);
    const end = joined.indexOf('\r\n\r\n');
    if (end < 0) {
      // A head larger than this is not a response a route should carry: stop watching.
      if (joined.length > 64 * 1024) this.state = 'broken';
      else this.head = joined;
      return Buffer.alloc(0);
    }
    this.head = Buffer.alloc(0);
    const lines = joined.subarray(0, end).toString('latin1').split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!status) {
      this.state = 'broken';
      return Buffer.alloc(0);
    }
    const code = Number(status[1]);
    const rest = joined.subarray(end + 4);
    // An interim response (100 Continue, 103 Early Hints): the real one follows.
    if (code >= 100 && code < 200 && code !== 101) return rest;
    this.status = code;
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0)
        headers.set(
          line.slice(0, colon).trim().toLowerCase(),
          line
            .slice(colon + 1)
            .trim()
            .toLowerCase(),
        );
    }
    if (this.method === 'HEAD' || code === 101 || code === 204 || code === 304) {
      this.state = 'done';
      return rest;
    }
    if ((headers.get('transfer-encoding') ?? '').split(',').pop()?.trim() === 'chunked') {
      this.state = 'chunk-size';
      return rest;
    }
    const length = headers.get('content-length');
    if (length !== undefined) {
      this.left = Number(length);
      if (!Number.isSafeInteger(this.left) || this.left < 0) this.state = 'broken';
      else this.state = this.left === 0 ? 'done' : 'length';
      return rest;
    }
    this.state = 'close';
    return rest;
  }

  private readLine(data: Buffer): Buffer {
    const newline = data.indexOf('\n');
    if (newline < 0) {
      this.line += data.toString('latin1');
      if (this.line.length > 4096) this.state = 'broken';
      return Buffer.alloc(0);
    }
    const line = (this.line + data.subarray(0, newline).toString('latin1')).replace(/\r$/, '');
    this.line = '';
    const rest = data.subarray(newline + 1);
    if (this.state === 'trailers') {
      if (line === '') this.state = 'done';
      return rest;
    }
    const size = Number.parseInt(line.split(';')[0]!.trim(), 16);
    if (!Number.isSafeInteger(size) || size < 0) {
      this.state = 'broken';
      return rest;
    }
    if (size === 0) this.state = 'trailers';
    else {
      this.state = 'chunk-data';
      this.left = size;
    }
    return rest;
  }
}
