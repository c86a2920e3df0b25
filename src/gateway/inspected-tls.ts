import type { Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import { createServer as createHttpServer, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { headerValue, secretApplies, type BoundSecret } from '../domain/bound-secret.js';
import { decideAddress } from '../domain/egress-policy.js';
import { parseIp } from '../domain/ip-address.js';
import { auditPath } from '../domain/request-rules.js';
import { denialHeaders, denialSentence, type DenialKind } from './denials.js';
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
    const applies = bound !== undefined && secretApplies(bound.secret, { host, method, path: target });
    const hop = new Set([...HOP, ...(bound ? [bound.secret.header.toLowerCase()] : [])]);
    const headers: Record<string, string | string[]> = {};
    for (const [key, value] of Object.entries(req.headers)) if (value !== undefined && !hop.has(key)) headers[key] = value;
    if (applies) headers[bound.secret.header.toLowerCase()] = headerValue(bound.secret, bound.value!);
    const rule = `${verdict.ruled ? verdict.rule : `intercept ${host}`}${applies ? ` with ${bound.secret.name}` : ''}`;
    // The path goes upstream exactly as it was judged, on a connection of this task's pool.
    const options: UpstreamOptions = { host, port, method, path: target, headers, timeout: this.connectTimeoutMs, agent: this.poolFor(channel), channel };
    const send = (retry: boolean): ClientRequest => {
      const request = httpsRequest(options, (response) => {
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
      request.on('socket', (socket) => {
        const address = addresses.get(socket);
        if (!address) return;
        attempt.address = address;
        // A connection opened earlier is held to the policy of now: an address denied since then is refused.
        const byAddress = decideAddress(channel.policy(), parseIp(address)!, port);
        if (!byAddress.allowed) request.destroy(new NotReached(byAddress.rule, 'address'));
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
