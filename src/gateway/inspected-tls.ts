import type { Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { headerValue, secretApplies, type BoundSecret } from '../domain/bound-secret.js';
import { auditPath } from '../domain/request-rules.js';
import { denialHeaders, denialSentence, type DenialKind } from './denials.js';
import type { Attempt, TaskChannel } from './gateway-core.js';
import { judgeRequest } from './request-check.js';
import { SecretPaths } from './secret-paths.js';

/** Headers that belong to one hop, never passed on. */
const HOP = ['connection', 'proxy-connection', 'proxy-authorization', 'keep-alive', 'te', 'upgrade', 'transfer-encoding'];

/**
 * HTTPS the gateway reads, terminated here with a leaf from the task's own CA (which only that
 * sandbox trusts): for hosts with method and path rules, and for a bound secret with `intercept`.
 * Only those hosts; every other tunnel stays end-to-end encrypted. Every request on the
 * connection (kept alive or pipelined) is judged on its own and goes upstream on a connection of
 * its own, so a request never rides on one that was judged before it. HTTP/2 is not offered
 * (ALPN says http/1.1), so each request arrives as a request line this gateway parses.
 */
export class InspectedTls extends SecretPaths {
  protected inspect(client: Socket, rest: Buffer, channel: TaskChannel, host: string, port: number, bound?: { secret: BoundSecret; value?: string }): void {
    if (rest.length > 0) client.unshift(rest);
    // No Nagle delay: an answer's head and body go as separate writes, and the client's delayed
    // ACK would hold the second for 40 ms.
    client.setNoDelay(true);
    const leaf = channel.leaf!(host);
    const tlsSocket = new TLSSocket(client, { isServer: true, key: leaf.key, cert: leaf.cert, ALPNProtocols: ['http/1.1'] });
    tlsSocket.on('error', () => client.destroy());
    // No 'connect' or 'upgrade' listener: a CONNECT inside is closed, an Upgrade header dropped.
    const server = createHttpServer({ requireHostHeader: true }, (req, res) => void this.inspectedRequest(req, res, tlsSocket, channel, host, port, bound));
    server.on('clientError', (_error, socket) => socket.destroy());
    server.emit('connection', tlsSocket);
  }

  private async inspectedRequest(
    req: IncomingMessage,
    res: ServerResponse,
    tlsSocket: TLSSocket,
    channel: TaskChannel,
    host: string,
    port: number,
    bound?: { secret: BoundSecret; value?: string },
  ): Promise<void> {
    const target = req.url ?? '';
    const method = req.method ?? 'GET';
    const attempt: Attempt = {
      method,
      host,
      port,
      path: auditPath(target),
      sni: String((tlsSocket as unknown as { servername?: string }).servername ?? ''),
      started: Date.now(),
      up: 0,
      down: 0,
    };
    let answered = false;
    const refuse = (status: string, rule: string, kind: DenialKind) => {
      if (answered) return;
      answered = true;
      this.finish(channel, attempt, false, rule);
      if (res.headersSent) return void res.destroy();
      const sentence = denialSentence(channel.task, host, port, rule, kind);
      const { reason, headers } = denialHeaders(sentence, rule, kind);
      res.writeHead(Number(status.slice(0, 3)), reason, headers).end(`${sentence}\n`);
    };
    if (attempt.sni !== host)
      return refuse('403 Forbidden', `TLS server name ${JSON.stringify((attempt.sni ?? '').slice(0, 255))} is not the CONNECT host`, 'request');
    const hostHeader = String(req.headers.host ?? '').toLowerCase();
    if (hostHeader !== host && hostHeader !== `${host}:${port}`)
      return refuse('403 Forbidden', `Host header ${JSON.stringify(hostHeader.slice(0, 255))} is not the request target`, 'request');
    // Origin form only: an absolute URI here could name another host to a shared front end.
    if (!target.startsWith('/')) return refuse('400 Bad Request', 'invalid request target (only origin-form paths)', 'request');
    const declared = req.headers['content-length'];
    const bodyLength = declared !== undefined ? Number(declared) : req.headers['transfer-encoding'] ? undefined : 0;
    const verdict = judgeRequest(channel.policy(), { kind: 'name', name: host }, port, { method, target, bodyLength });
    if (!verdict.allowed) return refuse(verdict.status, verdict.rule, verdict.kind);
    if (bound && bound.value === undefined)
      return refuse('503 Service Unavailable', `secret ${bound.secret.name} is not loaded in the gateway (run any moat command on the task)`, 'connect');
    const reached = await this.reach(channel, { kind: 'name', name: host }, port, 'https');
    if ('denied' in reached) return refuse(this.statusOf(reached.kind), reached.denied, reached.kind);
    if (reached.address) attempt.address = reached.address;
    const applies = bound !== undefined && secretApplies(bound.secret, { host, method, path: target });
    const hop = new Set([...HOP, ...(bound ? [bound.secret.header.toLowerCase()] : [])]);
    const headers: Record<string, string | string[]> = {};
    for (const [key, value] of Object.entries(req.headers)) if (value !== undefined && !hop.has(key)) headers[key] = value;
    if (applies) headers[bound.secret.header.toLowerCase()] = headerValue(bound.secret, bound.value!);
    const rule = `${verdict.ruled ? verdict.rule : `intercept ${host}`}${applies ? ` with ${bound.secret.name}` : ''}`;
    // No agent: with one (even `agent: false`) Node ignores createConnection and dials the name itself.
    const tls = () => tlsConnect({ socket: reached.socket, servername: host, secureContext: this.secureContextFor(channel) });
    // The path goes upstream exactly as it was judged.
    const upstream = httpsRequest({ host, port, method, path: target, headers, timeout: this.connectTimeoutMs, createConnection: tls }, (response) => {
      if (answered) return void response.destroy();
      answered = true;
      const back = { ...response.headers };
      for (const key of ['connection', 'keep-alive', 'proxy-connection']) delete back[key];
      res.writeHead(response.statusCode ?? 502, back);
      response.on('data', (chunk: Buffer) => (attempt.down += chunk.length));
      response.pipe(res);
      response.on('end', () => this.finish(channel, attempt, true, rule));
    });
    upstream.on('error', () => refuse('502 Bad Gateway', `could not open TLS to ${host}${attempt.address ? ` (${attempt.address})` : ''}`, 'connect'));
    // The body is passed on chunk by chunk and counted first: a chunked body that would pass the
    // cap ends the upstream request before that chunk, so no byte past the cap leaves.
    const cap = verdict.maxBody;
    req.on('data', (chunk: Buffer) => {
      if (cap !== undefined && attempt.up + chunk.length > cap) {
        upstream.destroy();
        req.pause();
        return refuse('413 Content Too Large', `${verdict.rule}: body over the cap of ${cap} bytes`, 'rule');
      }
      attempt.up += chunk.length;
      if (!upstream.write(chunk)) {
        req.pause();
        upstream.once('drain', () => req.resume());
      }
    });
    req.on('end', () => upstream.end());
  }
}
