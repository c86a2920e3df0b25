import { describe, expect, it } from 'vitest';
import { ResponseWatch } from '../../src/gateway/response-watch.js';
import { upstreamFailure, type RouteAttempt } from '../../src/domain/upstream-failure.js';

function watch(method: string, ...parts: string[]): ResponseWatch {
  const w = new ResponseWatch(method);
  for (const part of parts) w.feed(Buffer.from(part, 'latin1'));
  return w;
}

describe('ResponseWatch', () => {
  it('reads the status and tells a whole body from a cut one, by Content-Length', () => {
    const whole = watch('POST', 'HTTP/1.1 401 Unauthorized\r\ncontent-length: 5\r\n\r\n', 'ab', 'cde');
    expect(whole.status).toBe(401);
    expect(whole.cut).toBe(false);
    const cut = watch('POST', 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    expect(cut.status).toBe(200);
    expect(cut.cut).toBe(true);
  });

  it('follows chunked framing across reads, extensions and trailers included', () => {
    const parts = ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n', '\r\n5;ext=1\r\nhel', 'lo\r\n0\r', '\n', 'x-trailer: 1\r\n\r\n'];
    for (let i = 1; i <= parts.length; i++) expect(watch('POST', ...parts.slice(0, i)).cut).toBe(i < parts.length);
    // Byte by byte too: no boundary is special.
    const w = new ResponseWatch('POST');
    for (const byte of Buffer.from(parts.join(''), 'latin1')) w.feed(Buffer.from([byte]));
    expect(w.cut).toBe(false);
    expect(watch('POST', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\ndata\r\n').cut).toBe(true);
  });

  it('skips interim responses, knows bodiless ones, and says nothing it cannot tell', () => {
    expect(watch('POST', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\ncontent-length: 0\r\n\r\n').status).toBe(429);
    expect(watch('HEAD', 'HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n').cut).toBe(false);
    expect(watch('GET', 'HTTP/1.1 204 No Content\r\n\r\n').cut).toBe(false);
    // No framing: the body runs to the close, so it cannot be cut.
    expect(watch('GET', 'HTTP/1.1 200 OK\r\n\r\nabc').cut).toBe(false);
    // No answer at all is a cut; an answer that is not HTTP is not judged.
    expect(watch('GET').cut).toBe(true);
    expect(watch('GET', 'HTTP/1.1 20').cut).toBe(true);
    expect(watch('GET', 'SSH-2.0-x\r\n\r\n').cut).toBe(false);
    expect(watch('GET', 'SSH-2.0-x\r\n\r\n').status).toBeUndefined();
  });
});

describe('upstreamFailure', () => {
  const route = (status?: number, cut?: true): RouteAttempt => ({
    host: 'api.example',
    rule: 'route openai with KEY',
    decision: 'allowed',
    status,
    ...(cut ? { cut } : {}),
  });

  it('names a refused key, a rate limit, a provider failure and a cut stream', () => {
    expect(upstreamFailure([route(401)])).toMatchObject({
      route: 'openai',
      host: 'api.example',
      status: 401,
      message: expect.stringContaining('refused the key'),
    });
    expect(upstreamFailure([route(403)])?.message).toContain('refused the key');
    expect(upstreamFailure([route(429)])?.message).toContain('rate-limiting');
    expect(upstreamFailure([route(502)])?.message).toContain('failed on its side: 502');
    expect(upstreamFailure([route(400)])?.message).toContain("rejected the agent's request: 400");
    expect(upstreamFailure([route(200, true)])).toMatchObject({ cut: true, message: expect.stringContaining('cut its answer short') });
    expect(upstreamFailure([route(undefined, true)])?.message).toContain('without answering');
  });

  it('only the last route request counts, and only when it failed', () => {
    expect(upstreamFailure([route(429), route(200)])).toBeUndefined();
    expect(upstreamFailure([route(200), route(401)])?.status).toBe(401);
    // Requests that are not the agent's model calls are not its cause.
    const other: RouteAttempt = { host: 'exfil.test', rule: 'not in the allowlist', decision: 'denied' };
    expect(upstreamFailure([route(401), other])?.status).toBe(401);
    expect(upstreamFailure([other])).toBeUndefined();
    expect(upstreamFailure([])).toBeUndefined();
  });
});
