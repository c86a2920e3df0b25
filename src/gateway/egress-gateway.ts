import { promises as dns } from 'node:dns';
import { connect, type Socket } from 'node:net';
import { decideAddress, decideTarget, parseTarget, type EgressPolicy, type Target } from '../domain/egress-policy.js';
import { formatIp, parseIp, type IpAddress } from '../domain/ip-address.js';
import type { AuditRecord } from './audit.js';
import { header, readRequestHead, type RequestHead } from './request-head.js';
import { readSni } from './tls-sni.js';
import { connect as tlsConnect, rootCertificates, TLSSocket } from 'node:tls';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { GATEWAY_HOST, headerValue, hostOf, portOf, secretApplies, type BoundSecret } from '../domain/bound-secret.js';

/** Resolves a name to addresses; the gateway's own, never the sandbox's. */
export type Resolve = (name: string) => Promise<IpAddress[]>;

export function systemResolver(servers?: string[]): Resolve {
  const resolver = new dns.Resolver({ timeout: 3000, tries: 2 });
  if (servers && servers.length > 0) resolver.setServers(servers);
  return async (name) => {
    const [v4, v6] = await Promise.all([resolver.resolve4(name).catch(() => [] as string[]), resolver.resolve6(name).catch(() => [] as string[])]);
    return [...v4, ...v6].map((a) => parseIp(a)).filter((a): a is IpAddress => a !== undefined);
  };
}

export interface TaskChannel {
  task: string;
  policy: () => EgressPolicy;
  audit: (record: AuditRecord) => void;
  /** Bound secrets of the task, with their values when moat has handed them over. */
  secrets?: () => Array<{ secret: BoundSecret; value?: string }>;
  /** A leaf certificate from the task's own CA, for a bound host whose secret asks for interception. */
  leaf?: (host: string) => { key: string; cert: string };
}

interface Attempt {
  method: string;
  host: string;
  port: number;
  sni?: string;
  address?: string;
  started: number;
  up: number;
  down: number;
}

/**
 * The only way out of a sandbox: an HTTP proxy (absolute-URI requests and CONNECT) that judges
 * every connection against the task's policy. It decides on the name before resolving it (a
 * denied name is never looked up), resolves names itself and dials the address it resolved (no
 * rebinding between check and use), refuses internal addresses, and for CONNECT requires the TLS
 * server name to be the CONNECT host.
 */
export class EgressGateway {
  constructor(
    private readonly resolve: Resolve,
    private readonly connectTimeoutMs = 10_000,
    /** Extra CAs the gateway trusts for routes' upstream TLS (tests use their own CA). */
    private readonly extraCa: string[] = [],
  ) {}

  async handle(client: Socket, channel: TaskChannel): Promise<void> {
    client.on('error', () => undefined);
    const head = await readRequestHead(client);
    if (!head) {
      client.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    if (head.method === 'CONNECT') await this.tunnel(client, head, channel);
    else await this.forward(client, head, channel);
  }

  private finish(channel: TaskChannel, attempt: Attempt, allowed: boolean, rule: string): void {
    channel.audit({
      time: new Date(attempt.started).toISOString(),
      task: channel.task,
      method: attempt.method,
      host: attempt.host,
      port: attempt.port,
      ...(attempt.sni !== undefined ? { sni: attempt.sni } : {}),
      ...(attempt.address !== undefined ? { address: attempt.address } : {}),
      decision: allowed ? 'allowed' : 'denied',
      rule,
      bytesUp: attempt.up,
      bytesDown: attempt.down,
      durationMs: Date.now() - attempt.started,
    });
  }

  private deny(client: Socket, channel: TaskChannel, attempt: Attempt, rule: string, status = '403 Forbidden'): void {
    const body = `moat: egress denied (${rule})\n`;
    // The audit line first: by the time the client reads the refusal, the attempt is on record.
    this.finish(channel, attempt, false, rule);
    client.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }

  /** Name check, then resolution, then address check; returns the address to dial or a reason. */
  private async choose(channel: TaskChannel, target: Target, port: number): Promise<{ ip: IpAddress; rule: string } | { denied: string }> {
    const policy = channel.policy();
    const byName = decideTarget(policy, target, port);
    if (!byName.allowed) return { denied: byName.rule };
    const addresses = target.kind === 'ip' ? [target.ip] : await this.resolve(target.name);
    if (addresses.length === 0) return { denied: 'name did not resolve' };
    let last = 'no usable address';
    for (const ip of addresses) {
      const byAddress = decideAddress(policy, ip, port);
      if (byAddress.allowed) return { ip, rule: byName.rule };
      last = byAddress.rule;
    }
    return { denied: last };
  }

  private dial(ip: IpAddress, port: number): Promise<Socket | undefined> {
    // No Nagle delay: a proxy must not hold back the small writes of a handshake or a ping.
    return this.open(() => connect({ host: formatIp(ip), port, family: ip.family, noDelay: true }), 'connect');
  }

  /** A connection that is ready (connected, or TLS established) within the timeout, or undefined. */
  private open(make: () => Socket, ready: 'connect' | 'secureConnect'): Promise<Socket | undefined> {
    return new Promise((resolve) => {
      const socket = make();
      const timer = setTimeout(() => {
        socket.destroy();
        resolve(undefined);
      }, this.connectTimeoutMs);
      socket.once(ready, () => {
        clearTimeout(timer);
        resolve(socket);
      });
      socket.once('error', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
  }

  private splice(client: Socket, upstream: Socket, attempt: Attempt, onClose: () => void): void {
    client.on('data', (chunk: Buffer) => (attempt.up += chunk.length));
    upstream.on('data', (chunk: Buffer) => (attempt.down += chunk.length));
    client.pipe(upstream);
    upstream.pipe(client);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      client.destroy();
      upstream.destroy();
      onClose();
    };
    client.on('close', close);
    upstream.on('close', close);
    upstream.on('error', close);
    client.resume();
  }

  private async tunnel(client: Socket, head: RequestHead, channel: TaskChannel): Promise<void> {
    const match = /^(\[[0-9a-fA-F:.]+\]|[^:]+):(\d{1,5})$/.exec(head.target);
    const attempt: Attempt = { method: 'CONNECT', host: match?.[1] ?? head.target.slice(0, 255), port: Number(match?.[2] ?? 0), started: Date.now(), up: 0, down: 0 };
    const target = match ? parseTarget(match[1]!) : undefined;
    if (!target || attempt.port < 1 || attempt.port > 65535) return this.deny(client, channel, attempt, 'invalid CONNECT target', '400 Bad Request');
    // Decide on the name first: a denied name is refused without being looked up.
    const byName = decideTarget(channel.policy(), target, attempt.port);
    if (!byName.allowed) return this.deny(client, channel, attempt, byName.rule);

    client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    const intercepted = target.kind === 'name' ? (channel.secrets?.() ?? []).find((b) => b.secret.intercept && b.secret.hosts.some((h) => hostOf(h) === target.name && portOf(h, 443) === attempt.port)) : undefined;
    if (intercepted && channel.leaf && target.kind === 'name') return this.intercept(client, head.rest, channel, target.name, attempt.port, intercepted);
    if (byName.anyProtocol) return this.rawTunnel(client, head.rest, channel, target, attempt);
    // Resolve and connect while the client sends its ClientHello (as a plain proxy would): the
    // name is allowed and the address is guarded, and not a byte goes upstream before the server
    // name is checked. A refused hello closes the early connection unused.
    const early = this.choose(channel, target, attempt.port).then(async (chosen) => ('denied' in chosen ? { chosen, upstream: undefined } : { chosen, upstream: await this.dial(chosen.ip, attempt.port) }));
    const drop = () => void early.then(({ upstream }) => upstream?.destroy(), () => undefined);
    const hello = await this.readHello(client, head.rest);
    if (hello.kind !== 'sni') {
      // Only TLS with a server name goes through a tunnel: anything else could be any protocol to anyone.
      const rule = hello.kind === 'no-sni' && target.kind === 'ip' ? undefined : `tunnel without a TLS server name (${hello.kind})`;
      if (rule) {
        client.destroy();
        drop();
        return this.finish(channel, attempt, false, rule);
      }
    }
    const buffered = hello.data;
    if (hello.kind === 'sni') {
      attempt.sni = hello.name;
      const sni = parseTarget(hello.name);
      const same = sni && target.kind === 'name' && sni.kind === 'name' && sni.name === target.name;
      if (!same) {
        client.destroy();
        drop();
        return this.finish(channel, attempt, false, `TLS server name ${JSON.stringify(hello.name.slice(0, 255))} is not the CONNECT host`);
      }
    }
    const { chosen, upstream } = await early;
    if ('denied' in chosen) {
      client.destroy();
      return this.finish(channel, attempt, false, chosen.denied);
    }
    attempt.address = formatIp(chosen.ip);
    if (!upstream) {
      client.destroy();
      return this.finish(channel, attempt, false, `could not connect to ${attempt.address}:${attempt.port}`);
    }
    upstream.write(buffered);
    attempt.up += buffered.length;
    this.splice(client, upstream, attempt, () => this.finish(channel, attempt, true, chosen.rule));
  }

  private readHello(client: Socket, initial: Buffer): Promise<({ kind: 'sni'; name: string } | { kind: 'no-sni' | 'not-tls' | 'incomplete' }) & { data: Buffer }> {
    return new Promise((resolve) => {
      let data = initial;
      const finish = () => {
        clearTimeout(timer);
        client.off('data', onData);
        client.pause();
        const result = readSni(data);
        resolve({ ...result, data });
      };
      const onData = (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        if (readSni(data).kind !== 'incomplete' || data.length > 32 * 1024) finish();
      };
      const timer = setTimeout(finish, 10_000);
      if (readSni(data).kind !== 'incomplete') return finish();
      client.on('data', onData);
      client.on('end', finish);
      client.resume();
    });
  }

  private async forward(client: Socket, head: RequestHead, channel: TaskChannel): Promise<void> {
    let url: URL | undefined;
    try {
      url = new URL(head.target);
    } catch {
      url = undefined;
    }
    const attempt: Attempt = { method: head.method, host: url?.hostname ?? head.target.slice(0, 255), port: url ? Number(url.port || 80) : 0, started: Date.now(), up: 0, down: 0 };
    if (!url || url.protocol !== 'http:' || !head.target.startsWith('http://') || url.username || url.password) {
      return this.deny(client, channel, attempt, 'only absolute http:// requests and CONNECT are proxied', '400 Bad Request');
    }
    if (url.hostname.toLowerCase() === GATEWAY_HOST) return this.route(client, head, url, channel, attempt);
    const target = parseTarget(url.hostname);
    if (!target) return this.deny(client, channel, attempt, 'invalid host', '400 Bad Request');
    // The Host header must name the target: otherwise a shared front end could route elsewhere.
    const hosts = header(head, 'host');
    const expected = url.host.toLowerCase();
    const expectedNoPort = url.port === '' ? expected : expected.replace(/:80$/, '');
    if (hosts.length !== 1 || ![expected, expectedNoPort, `${url.hostname.toLowerCase()}:80`].includes(hosts[0]!.toLowerCase())) {
      return this.deny(client, channel, attempt, `Host header ${JSON.stringify((hosts[0] ?? '').slice(0, 255))} is not the request target`);
    }
    if (header(head, 'transfer-encoding').length > 0) return this.deny(client, channel, attempt, 'chunked request bodies are not proxied', '411 Length Required');
    const lengths = header(head, 'content-length');
    if (lengths.length > 1 || (lengths[0] !== undefined && !/^\d{1,15}$/.test(lengths[0]))) return this.deny(client, channel, attempt, 'bad Content-Length', '400 Bad Request');
    const bodyLength = Number(lengths[0] ?? 0);

    const chosen = await this.choose(channel, target, attempt.port);
    if ('denied' in chosen) return this.deny(client, channel, attempt, chosen.denied);
    attempt.address = formatIp(chosen.ip);
    const upstream = await this.dial(chosen.ip, attempt.port);
    if (!upstream) return this.deny(client, channel, attempt, `could not connect to ${attempt.address}:${attempt.port}`, '502 Bad Gateway');

    const hop = new Set(['connection', 'proxy-connection', 'proxy-authorization', 'keep-alive', 'te', 'upgrade']);
    const lines = [`${head.method} ${url.pathname}${url.search} HTTP/1.1`, ...head.headers.filter(([k]) => !hop.has(k)).map(([k, v]) => `${k}: ${v}`), 'connection: close', '', ''];
    const requestHead = Buffer.from(lines.join('\r\n'), 'latin1');
    upstream.write(requestHead);
    attempt.up += requestHead.length;
    await this.exchange(client, upstream, head.rest, bodyLength, attempt);
    this.finish(channel, attempt, true, chosen.rule);
  }

  /**
   * A plain-HTTP route inside the sandbox (http://moat.gateway/<route>/…) to a bound host over TLS,
   * with the secret written into its declared header: the agent configures a base URL and never
   * holds the key, and no TLS interception is needed.
   */
  private async route(client: Socket, head: RequestHead, url: URL, channel: TaskChannel, attempt: Attempt): Promise<void> {
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
    const chosen = await this.choose(channel, target, port);
    if ('denied' in chosen) return this.deny(client, channel, attempt, chosen.denied);
    attempt.address = formatIp(chosen.ip);
    const upstream = await this.open(() => tlsConnect({ host: attempt.address, port, servername: host, ca: [...rootCertificates, ...this.extraCa] }), 'secureConnect');
    if (!upstream) return this.deny(client, channel, attempt, `could not open TLS to ${host} (${attempt.address})`, '502 Bad Gateway');
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
  private intercept(client: Socket, rest: Buffer, channel: TaskChannel, host: string, port: number, bound: { secret: BoundSecret; value?: string }): void {
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
      res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(`moat: egress denied (${rule})\n`);
    };
    if (attempt.sni !== host) return refuse(403, `TLS server name ${JSON.stringify((attempt.sni ?? "").slice(0, 255))} is not the CONNECT host`);
    const hostHeader = String(req.headers.host ?? '').toLowerCase();
    if (hostHeader !== host && hostHeader !== `${host}:${port}`) return refuse(403, `Host header ${JSON.stringify(hostHeader.slice(0, 255))} is not the request target`);
    if (bound.value === undefined) return refuse(503, `secret ${bound.secret.name} is not loaded in the gateway (run any moat command on the task)`);
    const chosen = await this.choose(channel, { kind: 'name', name: host }, port);
    if ('denied' in chosen) return refuse(403, chosen.denied);
    attempt.address = formatIp(chosen.ip);
    const applies = secretApplies(bound.secret, { host, method: attempt.method, path });
    const hop = new Set(['connection', 'proxy-connection', 'proxy-authorization', 'keep-alive', 'te', 'upgrade', 'transfer-encoding', bound.secret.header.toLowerCase()]);
    const headers: Record<string, string | string[]> = {};
    for (const [key, value] of Object.entries(req.headers)) if (value !== undefined && !hop.has(key)) headers[key] = value;
    if (applies) headers[bound.secret.header.toLowerCase()] = headerValue(bound.secret, bound.value);
    const upstream = httpsRequest({ host: attempt.address, port, servername: host, method: attempt.method, path, headers, ca: [...rootCertificates, ...this.extraCa], agent: false, timeout: this.connectTimeoutMs }, (response) => {
      res.writeHead(response.statusCode ?? 502, response.headers);
      response.on('data', (chunk: Buffer) => (attempt.down += chunk.length));
      response.pipe(res);
      response.on('end', () => this.finish(channel, attempt, true, `intercept ${host}${applies ? ` with ${bound.secret.name}` : ''}`));
    });
    upstream.on('error', () => refuse(502, `could not open TLS to ${host} (${attempt.address})`));
    req.on('data', (chunk: Buffer) => (attempt.up += chunk.length));
    req.pipe(upstream);
  }

  /** A tunnel to a host:port the user allowed by name and port: any protocol (ssh, say), still resolved and guarded here. */
  private async rawTunnel(client: Socket, rest: Buffer, channel: TaskChannel, target: Target, attempt: Attempt): Promise<void> {
    const chosen = await this.choose(channel, target, attempt.port);
    if ('denied' in chosen) {
      client.destroy();
      return this.finish(channel, attempt, false, chosen.denied);
    }
    attempt.address = formatIp(chosen.ip);
    const upstream = await this.dial(chosen.ip, attempt.port);
    if (!upstream) {
      client.destroy();
      return this.finish(channel, attempt, false, `could not connect to ${attempt.address}:${attempt.port}`);
    }
    if (rest.length > 0) upstream.write(rest);
    attempt.up += rest.length;
    this.splice(client, upstream, attempt, () => this.finish(channel, attempt, true, `${chosen.rule} (any protocol)`));
  }

  /**
   * After a request head went upstream: forwards exactly the declared body (what arrived with the
   * head, then from the client), nothing after it, since a second request on the same connection
   * would reach this upstream without being judged; relays the answer; resolves when either side closes.
   */
  private exchange(client: Socket, upstream: Socket, early: Buffer, bodyLength: number, attempt: Attempt): Promise<void> {
    let remaining = bodyLength;
    const send = (chunk: Buffer) => {
      if (remaining <= 0) return;
      const part = chunk.subarray(0, remaining);
      remaining -= part.length;
      attempt.up += part.length;
      upstream.write(part);
    };
    send(early);
    upstream.on('data', (chunk: Buffer) => (attempt.down += chunk.length));
    upstream.pipe(client);
    client.on('data', send);
    client.resume();
    return new Promise<void>((resolve) => {
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        client.destroy();
        upstream.destroy();
        resolve();
      };
      upstream.on('close', close);
      upstream.on('error', close);
      client.on('close', close);
    });
  }
}
