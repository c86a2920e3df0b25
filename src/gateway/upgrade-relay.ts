import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * WebSockets to a host the gateway reads (method and path rules, or a bound secret with
 * `intercept`): the handshake is an HTTP request like any other and is judged like one; once the
 * upstream answers 101 the connection is no longer HTTP, so both sides are relayed as they are and
 * nothing after the handshake is judged. docs/security.md says so.
 */

/** Why an upgrade request is not relayed, or undefined when it is a WebSocket handshake moat relays. */
export function upgradeRefusal(headers: IncomingHttpHeaders): string | undefined {
  const upgrade = String(headers.upgrade ?? '')
    .trim()
    .toLowerCase();
  // Only WebSocket: after an h2c (or any other) upgrade the requests would flow on unjudged.
  if (upgrade !== 'websocket') return `only WebSocket upgrades are relayed (Upgrade: ${JSON.stringify(upgrade.slice(0, 64))})`;
  // A handshake has no body: bytes after its head are frames, which must wait for the 101.
  const length = headers['content-length'];
  if ((length !== undefined && length !== '0') || headers['transfer-encoding'] !== undefined) return 'a WebSocket handshake with a body';
  return undefined;
}

/** The headers a judged handshake takes upstream: the request's own, and the two that ask for the upgrade. */
export function handshakeHeaders(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  return { ...headers, connection: 'Upgrade', upgrade: 'websocket' };
}

/**
 * The upstream's answer as a response head to write to the client's raw connection: a 101 with
 * every header it sent (Sec-WebSocket-Accept, extensions), anything else with the framing headers
 * dropped (Node has decoded the body) and the connection closed after its body.
 */
export function responseHead(response: IncomingMessage): string {
  const switching = response.statusCode === 101;
  const lines = [`HTTP/1.1 ${response.statusCode ?? 502} ${(response.statusMessage ?? '').replace(/[^\x20-\x7e]/g, '')}`];
  const raw = response.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (!switching && ['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade'].includes(name.toLowerCase())) continue;
    lines.push(`${name}: ${raw[i + 1]!}`);
  }
  if (!switching) lines.push('Connection: close');
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/**
 * Relays an upgraded connection both ways, with backpressure. A side that ends has the other
 * ended after what is in flight (destroying it would drop the last frames); a failure ends both
 * at once; `done` gets the bytes each way when both have closed.
 */
export function relayUpgraded(client: Duplex, upstream: Duplex, done: (up: number, down: number) => void): void {
  let up = 0;
  let down = 0;
  let open = 2;
  const fail = () => {
    client.destroy();
    upstream.destroy();
  };
  for (const [from, to, count] of [
    [client, upstream, (n: number) => (up += n)],
    [upstream, client, (n: number) => (down += n)],
  ] as const) {
    from.on('data', (chunk: Buffer) => {
      count(chunk.length);
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => to.end());
    from.on('error', fail);
    from.once('close', () => {
      // Closed without its end (reset): the other side goes too, once its writes are out.
      if (!to.writableEnded) to.end();
      open -= 1;
      if (open === 0) done(up, down);
    });
    from.resume();
  }
}
