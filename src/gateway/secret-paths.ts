import type { Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { headerValue, hostOf, portOf, secretApplies, type BoundSecret } from '../domain/bound-secret.js';
import { parseTarget } from '../domain/egress-policy.js';
import { denialSentence } from './denials.js';
import { GatewayCore, type Attempt, type TaskChannel } from './gateway-core.js';
import { header, type RequestHead } from './request-head.js';

/**
 * The two ways a bound secret reaches its host, and nothing else: a plain-HTTP route inside the
 * sandbox, and (opt-in) TLS interception with the task's own CA. Both write the real value into
 * the declared header for the bound host only.
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
    if (bound.value === undefined) return this.deny(client, channel, attempt, `secret ${bound.secret.name} is not loaded in the gateway (run any moat command on the task)`, '503 Service Unavailable');
    if (header(head, 'transfer-encoding').length > 0) return this.deny(client, channel, attempt, 'chunked request bodies are not proxied', '411 Length Required');
    const bodyLength = Number(header(head, 'content-length')[0] ?? 0);
    if (!Number.isSafeInteger(bodyLength)) return this.deny(client, channel, attempt, 'bad Content-Length', '400 Bad Request');
    const target = parseTarget(host)!;
    const reached = await this.reach(channel, target, port, 'https');
    if ('denied' in reached) return this.deny(client, channel, attempt, reached.denied, this.statusOf(reached.kind), reached.kind);
    if (reached.address) attempt.address = reached.address;
    const upstream = await this.open(() => tlsConnect({ socket: reached.socket, servername: host, ca: this.caFor(channel) }), 'secureConnect');
    if (!upstream) {
      reached.socket.destroy();
      return this.deny(client, channel, attempt, `could not open TLS to ${host}${attempt.address ? ` (${attempt.address})` : ''}: its certificate is not trusted or the handshake failed`, '502 Bad Gateway', 'connect');
    }
    const applies = secretApplies(bound.secret, { host, method: head.method, path });
    const dropped = new Set(['connection', 'proxy-connection', 'proxy-authorization', 'keep-alive', 'te', 'upgrade', 'host', 'transfer-encoding', bound.secret.header.toLowerCase()]);
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
    await this.exchange(client, upstream, head.rest, bodyLength, attempt);
    this.finish(channel, attempt, true, `route ${routeName}${applies ? ` with ${bound.secret.name}` : ''}`);
  }

  /**
   * TLS to a bound host, terminated here with a leaf from the task's own CA (which only that
   * sandbox trusts), so the declared header can be set on each request. Only for hosts a secret
   * with `intercept` is bound to; every other tunnel stays end-to-end encrypted.
   */
  protected intercept(client: Socket, rest: Buffer, channel: TaskChannel, host: string, port: number, bound: { secret: BoundSecret; value?: string }): void {
    if (rest.length > 0) client.unshift(rest);
    const leaf = channel.leaf!(host);
    const tlsSocket = new TLSSocket(client, { isServer: true, key: leaf.key, cert: leaf.cert });
    tlsSocket.on('error', () => client.destroy());
    const server = createHttpServer((req, res) => void this.interceptedRequest(req, res, tlsSocket, channel, host, port, bound));
    server.on('clientError', (_error, socket) => socket.destroy());
    server.emit('connection', tlsSocket);
  }

  private async interceptedRequest(req: IncomingMessage, res: ServerResponse, tlsSocket: TLSSocket, channel: TaskChannel, host: string, port: number, bound: { secret: BoundSecret; value?: string }): Promise<void> {
    const path = req.url ?? '/';
    const attempt: Attempt = { method: req.method ?? 'GET', host, port, sni: String((tlsSocket as unknown as { servername?: string }).servername ?? ''), started: Date.now(), up: 0, down: 0 };
    const refuse = (status: number, rule: string) => {
      this.finish(channel, attempt, false, rule);
      const kind = status === 403 ? 'policy' : status === 502 ? 'connect' : 'request';
      res.writeHead(status, { 'content-type': 'text/plain', 'proxy-status': `moat; error=http_request_denied; details="${rule.replace(/[^\x20-\x7e]|["\\]/g, '?')}"`, connection: 'close' }).end(`${denialSentence(channel.task, host, port, rule, kind)}\n`);
    };
    if (attempt.sni !== host) return refuse(403, `TLS server name ${JSON.stringify((attempt.sni ?? "").slice(0, 255))} is not the CONNECT host`);
    const hostHeader = String(req.headers.host ?? '').toLowerCase();
    if (hostHeader !== host && hostHeader !== `${host}:${port}`) return refuse(403, `Host header ${JSON.stringify(hostHeader.slice(0, 255))} is not the request target`);
    if (bound.value === undefined) return refuse(503, `secret ${bound.secret.name} is not loaded in the gateway (run any moat command on the task)`);
    const reached = await this.reach(channel, { kind: 'name', name: host }, port, 'https');
    if ('denied' in reached) return refuse(reached.kind === 'policy' || reached.kind === 'address' ? 403 : 502, reached.denied);
    if (reached.address) attempt.address = reached.address;
    const applies = secretApplies(bound.secret, { host, method: attempt.method, path });
    const hop = new Set(['connection', 'proxy-connection', 'proxy-authorization', 'keep-alive', 'te', 'upgrade', 'transfer-encoding', bound.secret.header.toLowerCase()]);
    const headers: Record<string, string | string[]> = {};
    for (const [key, value] of Object.entries(req.headers)) if (value !== undefined && !hop.has(key)) headers[key] = value;
    if (applies) headers[bound.secret.header.toLowerCase()] = headerValue(bound.secret, bound.value);
    // No agent: with one (even `agent: false`) Node ignores createConnection and dials the name itself.
    const tls = () => tlsConnect({ socket: reached.socket, servername: host, ca: this.caFor(channel) });
    const upstream = httpsRequest({ host, port, method: attempt.method, path, headers, timeout: this.connectTimeoutMs, createConnection: tls }, (response) => {
      res.writeHead(response.statusCode ?? 502, response.headers);
      response.on('data', (chunk: Buffer) => (attempt.down += chunk.length));
      response.pipe(res);
      response.on('end', () => this.finish(channel, attempt, true, `intercept ${host}${applies ? ` with ${bound.secret.name}` : ''}`));
    });
    upstream.on('error', () => refuse(502, `could not open TLS to ${host}${attempt.address ? ` (${attempt.address})` : ''}`));
    req.on('data', (chunk: Buffer) => (attempt.up += chunk.length));
    req.pipe(upstream);
  }
}
