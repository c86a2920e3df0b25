import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { headerValue, hostOf, portOf, secretApplies } from '../domain/bound-secret.js';
import { parseTarget } from '../domain/egress-policy.js';
import { GatewayCore, type Attempt, type TaskChannel } from './gateway-core.js';
import { header, type RequestHead } from './request-head.js';
import { judgeRequest } from './request-check.js';
import { auditPath } from '../domain/request-rules.js';
import { ResponseWatch } from './response-watch.js';

/**
 * The plain-HTTP route by which a bound secret reaches its host; the other way, TLS interception
 * with the task's own CA, is in inspected-tls.ts. Both write the real value into the declared
 * header for the bound host only.
 */
export class SecretPaths extends GatewayCore {
  /**
   * A plain-HTTP route inside the sandbox (http://moat.gateway/<route>/…) to a bound host over TLS,
   * with the secret written into its declared header: the agent configures a base URL and never
   * holds the key, and no TLS interception is needed.
   */
  protected async route(client: Socket, head: RequestHead, url: URL, channel: TaskChannel, attempt: Attempt): Promise<void> {
    const [, routeName = '', ...rest] = url.pathname.split('/');
    const bound = (channel.secrets?.() ?? []).find((entry) => entry.secret.route === routeName);
    if (!bound) return this.deny(client, channel, attempt, `no route ${JSON.stringify(routeName.slice(0, 64))}`, '404 Not Found');
    const host = hostOf(bound.secret.hosts[0]!);
    const port = portOf(bound.secret.hosts[0]!, 443);
    const path = `/${rest.join('/')}${url.search}`;
    attempt.host = host;
    attempt.port = port;
    attempt.sni = host;
    if (bound.value === undefined)
      return this.deny(
        client,
        channel,
        attempt,
        `secret ${bound.secret.name} is not loaded in the gateway (run any moat command on the task)`,
        '503 Service Unavailable',
      );
    if (header(head, 'transfer-encoding').length > 0)
      return this.deny(client, channel, attempt, 'chunked request bodies are not proxied', '411 Length Required');
    const bodyLength = Number(header(head, 'content-length')[0] ?? 0);
    if (!Number.isSafeInteger(bodyLength)) return this.deny(client, channel, attempt, 'bad Content-Length', '400 Bad Request');
    const target = parseTarget(host)!;
    // The bound host's method and path rules hold on the route too, on the path as it goes upstream.
    attempt.path = auditPath(path);
    const verdict = judgeRequest(channel.policy(), target, port, { method: head.method, target: path, bodyLength });
    if (!verdict.allowed) return this.deny(client, channel, attempt, verdict.rule, verdict.status, verdict.kind);
    const reached = await this.reach(channel, target, port, 'https');
    if ('denied' in reached) return this.deny(client, channel, attempt, reached.denied, this.statusOf(reached.kind), reached.kind);
    if (reached.address) attempt.address = reached.address;
    const upstream = await this.open(
      () => tlsConnect({ socket: reached.socket, servername: host, secureContext: this.secureContextFor(channel) }),
      'secureConnect',
    );
    if (!upstream) {
      reached.socket.destroy();
      return this.deny(
        client,
        channel,
        attempt,
        `could not open TLS to ${host}${attempt.address ? ` (${attempt.address})` : ''}: its certificate is not trusted or the handshake failed`,
        '502 Bad Gateway',
        'connect',
      );
    }
    const applies = secretApplies(bound.secret, { host, method: head.method, path });
    const dropped = new Set([
      'connection',
      'proxy-connection',
      'proxy-authorization',
      'keep-alive',
      'te',
      'upgrade',
      'host',
      'transfer-encoding',
      bound.secret.header.toLowerCase(),
    ]);
    const lines = [
      `${head.method} ${path} HTTP/1.1`,
      `host: ${port === 443 ? host : `${host}:${port}`}`,
      ...head.headers.filter(([k]) => !dropped.has(k)).map(([k, v]) => `${k}: ${v}`),
      // The one place the real value is written: the declared header, for the bound host only.
      ...(applies ? [`${bound.secret.header}: ${headerValue(bound.secret, bound.value)}`] : []),
      'connection: close',
      '',
      '',
    ];
    upstream.write(Buffer.from(lines.join('\r\n'), 'latin1'));
    // The answer as the agent gets it, for `moat agent` to name a refused key or a cut stream.
    const watch = new ResponseWatch(head.method);
    upstream.on('data', (chunk: Buffer) => watch.feed(chunk));
    // An agent that hangs up mid-answer cut it itself: only the upstream ending early counts.
    let upstreamEnded = false;
    let agentLeft = false;
    for (const event of ['end', 'error', 'close']) upstream.once(event, () => (upstreamEnded = true));
    client.once('close', () => (agentLeft ||= !upstreamEnded));
    await this.exchange(client, upstream, head.rest, bodyLength, attempt);
    attempt.status = watch.status;
    attempt.cut = watch.cut && !agentLeft;
    this.finish(channel, attempt, true, `route ${routeName}${applies ? ` with ${bound.secret.name}` : ''}`);
  }
}
