import type { Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import { createServer as createHttpServer, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { headerValue, secretApplies, type BoundSecret } from '../domain/bound-secret.js';
import { decideAddress } from '../domain/egress-policy.js';
import { parseIp } from '../domain/ip-address.js';
import { auditPath } from '../domain/request-rules.js';
import { denialHeaders, denialResponse, denialSentence, type DenialKind } from './denials.js';
import { handshakeHeaders, relayUpgraded, responseHead, upgradeRefusal } from './upgrade-relay.js';
import type { Attempt, TaskChannel } from './gateway-core.js';
import { judgeRequest } from './request-check.js';
import { SecretPaths } from './secret-paths.js';

/** Headers that belong to one hop, never passed on. */
const HOP = ['connection', 'proxy-connection', 'proxy-authorization', 'keep-alive', 'te', 'upgrade', 'transfer-encoding'];

/** How long an upstream connection with no request on it is kept for the next one. */
const IDLE_UPSTREAM_MS = 15_000;

/** Why an upstream connection was not opened: the reach's own refusal, passed to the request. */
class NotReached extends Error {
  constructor(
    readonly denied: string,
    readonly kind: DenialKind,
  ) {
    super(denied);
  }
}

/** What a request hands its connection pool: the task's channel, so a new connection is reached as the task's. */
interface UpstreamOptions extends RequestOptions {
  channel: TaskChannel;
}

/**
 * One task's kept-alive upstream connections to inspected hosts. Requests are judged one by one
 * before they are sent, so a connection carries only judged requests; what it saves is a TCP and
 * TLS handshake per request. A new connection is reached exactly as before (name, resolution,
 * address checks, upstream proxy) and verified against the gateway's CAs; the audit line of a
 * request on a reused connection names the address it was opened to.
 */
class UpstreamPool extends HttpsAgent {
  constructor(private readonly open: (channel: TaskChannel, host: string, port: number) => Promise<Duplex | NotReached>) {
    super({ keepAlive: true, timeout: IDLE_UPSTREAM_MS, maxFreeSockets: 16, scheduling: 'lifo' });
  }

  override createConnection(options: UpstreamOptions, callback: (error: Error | null, socket: Duplex) => void): Duplex {
    void this.open(options.channel, String(options.host), Number(options.port)).then(
      (opened) => (opened instanceof NotReached ? callback(opened, undefined as unknown as Duplex) : callback(null, opened)),
      (error: Error) => callback(error, undefined as unknown as Duplex),
    );
    // Node's agent waits for the callback when nothing is returned.
    return undefined as unknown as Duplex;
  }
}

/** The address each pooled connection was opened to, for the audit lines of the requests it carries. */
const addresses = new WeakMap<object, string>();

/**
 * HTTPS the gateway reads, terminated here with a leaf from the task's own CA (which only that
 * sandbox trusts): for hosts with method and path rules, and for a bound secret with `intercept`.
 * Only those hosts; every other tunnel stays end-to-end encrypted. Every request on the
 * connection (kept alive or pipelined) is judged on its own before it goes upstream, on a kept-alive
 * connection of the task's own pool (never another task's). HTTP/2 is not offered
 * (ALPN says http/1.1), so each request arrives as a request line this gateway parses.
 */
export class InspectedTls extends SecretPaths {
  /** Per task (its channel's scope): the pool of its upstream connections to inspected hosts. */
  private readonly pools = new WeakMap<object, UpstreamPool>();

  /** Ends a task's kept-alive upstream connections (its listener closed). */
  release(scope: object): void {
    this.pools.get(scope)?.destroy();
    this.pools.delete(scope);
  }

  /** Parsed leaf keys, by certificate: parsing them again for every client connection cost more than its handshake. */
  private readonly leafContexts = new Map<string, SecureContext>();

  private leafContext(leaf: { key: string; cert: string }): SecureContext {
    let context = this.leafContexts.get(leaf.cert);
    if (!context) {
      context = createSecureContext({ key: leaf.key, cert: leaf.cert });
      // A bounded cache: the oldest leaf goes first (each task has a leaf per inspected host).
      if (this.leafContexts.size >= 256) this.leafContexts.delete(this.leafContexts.keys().next().value!);
      this.leafContexts.set(leaf.cert, context);
    }
    return context;
  }

  private poolFor(channel: TaskChannel): UpstreamPool {
    const scope = channel.scope ?? channel;
    let pool = this.pools.get(scope);
    if (!pool) {
      pool = new UpstreamPool(async (of, host, port) => {
        const reached = await this.reach(of, { kind: 'name', name: host }, port, 'https');
        if ('denied' in reached) return new NotReached(reached.denied, reached.kind);
        const socket = tlsConnect({ socket: reached.socket, servername: host, secureContext: this.secureContextFor(of) });
        if (reached.address) addresses.set(socket, reached.address);
        return socket;
      });
      this.pools.set(scope, pool);
    }
    return pool;
  }

  protected inspect(client: Socket, rest: Buffer, channel: TaskChannel, host: string, port: number, bound?: { secret: BoundSecret; value?: string }): void {
    if (rest.length > 0) client.unshift(rest);
    // No Nagle delay: an answer's head and body go as separate writes, and the client's delayed
    // ACK would hold the second for 40 ms.
    client.setNoDelay(true);
    const tlsSocket = new TLSSocket(client, { isServer: true, secureContext: this.leafContext(channel.leaf!(host)), ALPNProtocols: ['http/1.1'] });
    tlsSocket.on('error', () => client.destroy());
    // No 'connect' listener: a CONNECT inside is closed. An upgrade is a WebSocket handshake, judged as a request.
    const server = createHttpServer({ requireHostHeader: true }, (req, res) => void this.inspectedRequest(req, res, tlsSocket, channel, host, port, bound));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, early: Buffer) =>
      this.inspectedUpgrade(req, socket, early, tlsSocket, channel, host, port, bound),
    );
    server.on('clientError', (_error, socket) => socket.destroy());
    server.emit('connection', tlsSocket);
  }

  /**
   * What every request read on an inspected connection goes through, a WebSocket handshake too:
   * the TLS name and Host are the CONNECT host, the target is a path, the live policy and its
   * rules admit it, and a bound secret's header is set when it applies (overwriting the client's).
   */
  private judgeInspected(
    req: IncomingMessage,
    attempt: Attempt,
    channel: TaskChannel,
    host: string,
    port: number,
    bound?: { secret: BoundSecret; value?: string },
  ):
    | { refused: { status: string; rule: string; kind: DenialKind } }
    | { rule: string; verdictRule: string; headers: Record<string, string | string[]>; bodyLength?: number; maxBody?: number } {
    const target = req.url ?? '';
    const method = attempt.method;
    const refused = (status: string, rule: string, kind: DenialKind) => ({ refused: { status, rule, kind } });
    if (attempt.sni !== host)
      return refused('403 Forbidden', `TLS server name ${JSON.stringify((attempt.sni ?? '').slice(0, 255))} is not the CONNECT host`, 'request');
    const hostHeader = String(req.headers.host ?? '').toLowerCase();
    if (hostHeader !== host && hostHeader !== `${host}:${port}`)
      return refused('403 Forbidden', `Host header ${JSON.stringify(hostHeader.slice(0, 255))} is not the request target`, 'request');
    // Origin form only: an absolute URI here could name another host to a shared front end.
    if (!target.startsWith('/')) return refused('400 Bad Request', 'invalid request target (only origin-form paths)', 'request');
    const declared = req.headers['content-length'];
    const bodyLength = declared !== undefined ? Number(declared) : req.headers['transfer-encoding'] ? undefined : 0;
    const verdict = judgeRequest(channel.policy(), { kind: 'name', name: host }, port, { method, target, bodyLength });
    if (!verdict.allowed) return refused(verdict.status, verdict.rule, verdict.kind);
    if (bound && bound.value === undefined)
      return refused('503 Service Unavailable', `secret ${bound.secret.name} is not loaded in the gateway (run any moat command on the task)`, 'connect');
    const applies = bound !== undefined && secretApplies(bound.secret, { host, method, path: target });
    const hop = new Set([...HOP, ...(bound ? [bound.secret.header.toLowerCase()] : [])]);
    const headers: Record<string, string | string[]> = {};
    for (const [key, value] of Object.entries(req.headers)) if (value !== undefined && !hop.has(key)) headers[key] = value;
    if (applies) headers[bound.secret.header.toLowerCase()] = headerValue(bound.secret, bound.value!);
    const rule = `${verdict.ruled ? verdict.rule : `intercept ${host}`}${applies ? ` with ${bound.secret.name}` : ''}`;
    return {
      rule,
      verdictRule: verdict.rule,
      headers,
      ...(bodyLength !== undefined ? { bodyLength } : {}),
      ...(verdict.maxBody !== undefined ? { maxBody: verdict.maxBody } : {}),
    };
  }

  private attemptOf(req: IncomingMessage, tlsSocket: TLSSocket, host: string, port: number): Attempt {
    return {
      method: req.method ?? 'GET',
      host,
      port,
      path: auditPath(req.url ?? ''),
      sni: String((tlsSocket as unknown as { servername?: string }).servername ?? ''),
      started: Date.now(),
      up: 0,
      down: 0,
    };
  }

  /**
   * The request that goes upstream on a connection of the task's pool; the audit line names the
   * address that connection was opened to, and a connection opened earlier is held to the policy
   * of now (an address denied since then is refused).
   */
  private upstreamRequest(options: UpstreamOptions, attempt: Attempt, channel: TaskChannel): ClientRequest {
    const request = httpsRequest(options);
    request.on('socket', (socket) => {
      const address = addresses.get(socket);
      if (!address) return;
      attempt.address = address;
      const byAddress = decideAddress(channel.policy(), parseIp(address)!, attempt.port);
      if (!byAddress.allowed) request.destroy(new NotReached(byAddress.rule, 'address'));
    });
    return request;
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
    const attempt = this.attemptOf(req, tlsSocket, host, port);
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
    const judged = this.judgeInspected(req, attempt, channel, host, port, bound);
    if ('refused' in judged) return refuse(judged.refused.status, judged.refused.rule, judged.refused.kind);
    const { rule, headers, bodyLength } = judged;
    // The path goes upstream exactly as it was judged, on a connection of this task's pool.
    const options: UpstreamOptions = { host, port, method, path: target, headers, timeout: this.connectTimeoutMs, agent: this.poolFor(channel), channel };
    const send = (retry: boolean): ClientRequest => {
      const request = this.upstreamRequest(options, attempt, channel);
      request.on('response', (response: IncomingMessage) => {
        if (answered) return void response.destroy();
        answered = true;
        const back = { ...response.headers };
        for (const key of ['connection', 'keep-alive', 'proxy-connection']) delete back[key];
        res.writeHead(response.statusCode ?? 502, back);
        response.on('data', (chunk: Buffer) => (attempt.down += chunk.length));
        response.pipe(res);
        response.on('end', () => this.finish(channel, attempt, true, rule));
        // A client that leaves mid-answer ends the upstream request: its connection is not reused.
        res.on('close', () => {
          if (!response.complete) request.destroy();
        });
      });
      request.on('error', (error: NodeJS.ErrnoException) => {
        // An idle connection the upstream closed just as it was reused: a request without a body
        // is sent once more, on a new connection (nothing of it was answered).
        if (retry && !answered && request.reusedSocket && bodyLength === 0 && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) {
          upstream = send(false);
          if (req.readableEnded) upstream.end();
          return;
        }
        if (error instanceof NotReached) return refuse(this.statusOf(error.kind), error.denied, error.kind);
        refuse('502 Bad Gateway', `could not open TLS to ${host}${attempt.address ? ` (${attempt.address})` : ''}`, 'connect');
      });
      return request;
    };
    let upstream = send(true);
    // The body is passed on chunk by chunk and counted first: a chunked body that would pass the
    // cap ends the upstream request before that chunk, so no byte past the cap leaves.
    const cap = judged.maxBody;
    req.on('data', (chunk: Buffer) => {
      if (cap !== undefined && attempt.up + chunk.length > cap) {
        upstream.destroy();
        req.pause();
        return refuse('413 Content Too Large', `${judged.verdictRule}: body over the cap of ${cap} bytes`, 'rule');
      }
      attempt.up += chunk.length;
      if (!upstream.write(chunk)) {
        req.pause();
        upstream.once('drain', () => req.resume());
      }
    });
    req.on('end', () => upstream.end());
  }

  /**
   * A WebSocket handshake on an inspected connection: judged as the request it is (method, path,
   * Host, live policy), sent upstream with its Upgrade headers (and a bound secret's header when
   * it applies: on the handshake only), and once the upstream answers 101 both sides are relayed
   * as they are. Frames the client sent early wait for that 101; a refusal drops them. Any other
   * answer is passed back and the connection closed.
   */
  private inspectedUpgrade(
    req: IncomingMessage,
    client: Duplex,
    early: Buffer,
    tlsSocket: TLSSocket,
    channel: TaskChannel,
    host: string,
    port: number,
    bound?: { secret: BoundSecret; value?: string },
  ): void {
    const attempt = this.attemptOf(req, tlsSocket, host, port);
    client.on('error', () => client.destroy());
    let answered = false;
    const refuse = (status: string, rule: string, kind: DenialKind) => {
      if (answered) return;
      answered = true;
      this.finish(channel, attempt, false, rule);
      client.end(denialResponse(status, denialSentence(channel.task, host, port, rule, kind), rule, kind));
    };
    const judged = this.judgeInspected(req, attempt, channel, host, port, bound);
    if ('refused' in judged) return refuse(judged.refused.status, judged.refused.rule, judged.refused.kind);
    const refusal = upgradeRefusal(req.headers);
    if (refusal) return refuse('400 Bad Request', refusal, 'request');
    const options: UpstreamOptions = {
      host,
      port,
      method: attempt.method,
      path: req.url ?? '/',
      headers: handshakeHeaders(judged.headers),
      timeout: this.connectTimeoutMs,
      agent: this.poolFor(channel),
      channel,
    };
    const request = this.upstreamRequest(options, attempt, channel);
    // A client that leaves before the answer ends the upstream request (and no upgrade is relayed to nobody).
    const left = () => {
      if (answered) return;
      answered = true;
      request.destroy();
      this.finish(channel, attempt, false, 'the client left before the upstream answered');
    };
    client.once('close', left);
    request.on('upgrade', (response: IncomingMessage, upstream: Duplex, upstreamHead: Buffer) => {
      if (answered) return void upstream.destroy();
      answered = true;
      attempt.status = 101;
      // From here on the connection is not HTTP: nothing more is judged (docs/security.md).
      request.setTimeout(0);
      (upstream as Socket).setTimeout(0);
      client.write(responseHead(response));
      if (upstreamHead.length > 0) client.write(upstreamHead);
      if (early.length > 0) upstream.write(early);
      relayUpgraded(client, upstream, (up, down) => {
        attempt.up += early.length + up;
        attempt.down += upstreamHead.length + down;
        this.finish(channel, attempt, true, judged.rule);
      });
    });
    request.on('response', (response: IncomingMessage) => {
      if (answered) return void response.destroy();
      answered = true;
      attempt.status = response.statusCode;
      client.write(responseHead(response));
      response.on('data', (chunk: Buffer) => (attempt.down += chunk.length));
      response.pipe(client);
      response.on('end', () => this.finish(channel, attempt, true, judged.rule));
      client.on('close', () => request.destroy());
    });
    request.on('error', (error: Error) => {
      if (error instanceof NotReached) return refuse(this.statusOf(error.kind), error.denied, error.kind);
      if (answered) return void client.destroy();
      refuse('502 Bad Gateway', `could not open TLS to ${host}${attempt.address ? ` (${attempt.address})` : ''}`, 'connect');
    });
    request.end();
  }
}
