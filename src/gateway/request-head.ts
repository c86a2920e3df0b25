import type { Socket } from 'node:net';

export interface RequestHead {
  method: string;
  target: string;
  version: string;
  headers: Array<[string, string]>;
  /** Bytes that arrived after the head (the start of a body or of a TLS handshake). */
  rest: Buffer;
}

const MAX_HEAD = 64 * 1024;

/** Reads one HTTP/1.x request head from a socket, strictly; undefined on anything malformed. */
export function readRequestHead(socket: Socket, timeoutMs = 30_000): Promise<RequestHead | undefined> {
  return new Promise((resolve) => {
    let buffer = Buffer.alloc(0);
    const done = (value: RequestHead | undefined) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      resolve(value);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const onEnd = () => done(undefined);
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buffer.length > MAX_HEAD) done(undefined);
        return;
      }
      done(parseHead(buffer.subarray(0, end).toString('latin1'), buffer.subarray(end + 4)));
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.resume();
  });
}

export function parseHead(text: string, rest: Buffer): RequestHead | undefined {
  const lines = text.split('\r\n');
  const match = /^([A-Z]{1,16}) (\S{1,8000}) (HTTP\/1\.[01])$/.exec(lines[0] ?? '');
  if (!match) return undefined;
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    // No obsolete line folding, no control characters: ambiguity between parsers is an attack.
    // eslint-disable-next-line no-control-regex -- the control characters are what this refuses
    const header = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*$/.exec(line);
    if (!header) return undefined;
    headers.push([header[1]!.toLowerCase(), header[2]!]);
  }
  return { method: match[1]!, target: match[2]!, version: match[3]!, headers, rest };
}

export function header(head: RequestHead, name: string): string[] {
  return head.headers.filter(([key]) => key === name).map(([, value]) => value);
}
