import type { Socket } from 'node:net';
import { decideTarget, parseTarget, type Decision, type Target } from '../domain/egress-policy.js';
import { GATEWAY_HOST, hostOf, portOf } from '../domain/bound-secret.js';
import { type Attempt, type TaskChannel } from './gateway-core.js';
import { header, readRequestHead, type RequestHead } from './request-head.js';
import { InspectedTls } from './inspected-tls.js';
import { auditPath, rulesFor } from '../domain/request-rules.js';
import { judgeRequest } from './request-check.js';
import { readSni } from './tls-sni.js';
import { proxyFor } from './upstream-proxy.js';
import { formatIp } from '../domain/ip-address.js';
import { denialResponse, denialSentence, type DenialKind } from './denials.js';

/** The first byte of every TLS connection (a handshake record). */
const TLS_HANDSHAKE = 0x16;

/** The first bytes a client sends in a tunnel; undefined when it sends none in time. */
function firstBytes(client: Socket, timeoutMs = 30_000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const done = (value: Buffer | undefined) => {
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onEnd);
      client.pause();
      resolve(value);
    };
    const onData = (chunk: Buffer) => done(chunk);
    const onEnd = () => done(undefined);
    const timer = setTimeout(() => done(undefined), timeoutMs);
    client.on('data', onData);
    client.on('end', onEnd);
    client.resume();
  });
}

export { systemResolver, type Resolve, type TaskChannel } from './gateway-core.js';

/**
 * The only way out of a sandbox: an HTTP proxy (absolute-URI requests and CONNECT) that judges
 * every connection against the task's policy. It decides on the name before resolving it (a
 * denied name is never looked up), resolves names itself and dials the address it resolved (no
 * rebinding between check and use), refuses internal addresses, and for CONNECT requires the TLS
 * server name to be the CONNECT host.
 */
export class EgressGateway extends InspectedTls {
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

  private async tunnel(client: Socket, head: RequestHead, channel: TaskChannel): Promise<void> {
    const match = /^(\[[0-9a-fA-F:.]+\]|[^:]+):(\d{1,5})$/.exec(head.target);
    const attempt: Attempt = {
      method: 'CONNECT',
      host: match?.[1] ?? head.target.slice(0, 255),
      port: Number(match?.[2] ?? 0),
      started: Date.now(),
      up: 0,
      down: 0,
    };
    const target = match ? parseTarget(match[1]!) : undefined;
    if (!target || attempt.port < 1 || attempt.port > 65535) return this.deny(client, channel, attempt, 'invalid CONNECT target', '400 Bad Request', 'request');
    if (target.kind === 'name' && target.name === GATEWAY_HOST && attempt.port === 80) return this.routeTunnel(client, head.rest, channel, attempt);
    // Decide on the name first: a denied name is refused without being looked up.
    const byName = await this.decideName(channel, target, attempt);
    if (!byName.allowed) return this.refuseTunnel(client, head.rest, channel, attempt, byName.rule, 'policy');

    const intercepted =
      target.kind === 'name'
        ? (channel.secrets?.() ?? []).find(
            (b) => b.secret.intercept && b.secret.hosts.some((h) => hostOf(h) === target.name && portOf(h, 443) === attempt.port),
          )
        : undefined;
    if (intercepted && channel.leaf && target.kind === 'name') {
      client.write('HTTP/1.1 200 Connection established\r\n\r\n');
      return this.inspect(client, head.rest, channel, target.name, attempt.port, intercepted);
    }
    // A host with method and path rules: its requests are read (inspected-tls.ts), never tunnelled blind.
    if (rulesFor(channel.policy().requests, target, attempt.port, byName.anyProtocol === true).length > 0)
      return this.inspectRuled(client, head.rest, channel, target, attempt);
    // Everything policy decides is decided before the client hears "200": the name, then the
    // address (or, through an upstream proxy, the proxy's own answer). A refusal is then a 403
    // with the reason, never a tunnel that opens and resets. A direct connection is dialled while
    // the client sends its TLS hello (a connection failure, not a refusal, may then end the
    // tunnel); not a byte goes upstream before the server name is checked.
    const proxied = proxyFor(channel.upstream, 'https', target, attempt.port) !== undefined;
    let rule: string;
    let opening: Promise<Socket | undefined>;
    if (proxied) {
      const reached = await this.reach(channel, target, attempt.port, 'https');
      if ('denied' in reached) return this.refuseTunnel(client, head.rest, channel, attempt, reached.denied, reached.kind);
      rule = reached.rule;
      opening = Promise.resolve(reached.socket);
    } else {
      const chosen = await this.choose(channel, target, attempt.port);
      if ('denied' in chosen) return this.refuseTunnel(client, head.rest, channel, attempt, chosen.denied, chosen.kind);
      rule = chosen.rule;
      attempt.address = formatIp(chosen.ip);
      opening = this.dial(chosen.ip, attempt.port, { relay: true });
    }
    if (byName.asked) rule = `${rule} (${byName.asked})`;
    const drop = () =>
      void opening.then(
        (socket) => socket?.destroy(),
        () => undefined,
      );
    if (client.destroyed) {
      drop();
      return this.finish(channel, attempt, false, 'the client left before the tunnel opened');
    }
    client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    let data = head.rest;
    if (!byName.anyProtocol) {
      const hello = await this.readHello(client, head.rest);
      const refuse = (reason: string) => {
        client.destroy();
        drop();
        this.finish(channel, attempt, false, reason);
      };
      // Plain HTTP in the tunnel (Node's proxy agents tunnel http:// URLs): judged as the same
      // request in absolute form, never relayed blind.
      if (hello.kind === 'not-tls' && /^[A-Z]{1,16} \//.test(hello.data.toString('latin1', 0, 18))) {
        drop();
        return this.plainInTunnel(client, hello.data, channel, attempt.host, attempt.port);
      }
      // Only TLS with a server name goes through a tunnel: anything else could be any protocol to anyone.
      if (hello.kind !== 'sni' && !(hello.kind === 'no-sni' && target.kind === 'ip')) return refuse(`tunnel without a TLS server name (${hello.kind})`);
      if (hello.kind === 'sni') {
        attempt.sni = hello.name;
        const sni = parseTarget(hello.name);
        const same = sni && target.kind === 'name' && sni.kind === 'name' && sni.name === target.name;
        if (!same) return refuse(`TLS server name ${JSON.stringify(hello.name.slice(0, 255))} is not the CONNECT host`);
      }
      data = hello.data;
    }
    const upstream = await opening;
    if (!upstream) {
      client.destroy();
      return this.finish(channel, attempt, false, `could not connect to ${attempt.address}:${attempt.port}`);
    }
    if (data.length > 0) upstream.write(data);
    attempt.up += data.length;
    // A tunnel to a host:port the user allowed by name and port may carry any protocol (ssh, say).
    this.splice(client, upstream, attempt, () => this.finish(channel, attempt, true, byName.anyProtocol ? `${rule} (any protocol)` : rule));
  }

  /**
   * A route reached through a tunnel: Node's fetch behind a proxy (undici's EnvHttpProxyAgent, the
   * Gemini CLI's) tunnels even plain HTTP, so `CONNECT moat.gateway:80` opens to moat alone and the
   * one request inside it goes the same way as an absolute `http://moat.gateway/…` request.
   */
  private async routeTunnel(client: Socket, rest: Buffer, channel: TaskChannel, attempt: Attempt): Promise<void> {
    client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    if (rest.length > 0) client.unshift(rest);
    const inner = await readRequestHead(client, 30_000);
    if (!inner) return void client.destroy();
    attempt.method = inner.method;
    if (!inner.target.startsWith('/') || header(inner, 'host').some((h) => h.toLowerCase() !== GATEWAY_HOST && h.toLowerCase() !== `${GATEWAY_HOST}:80`)) {
      return this.deny(client, channel, attempt, 'a request through a tunnel to moat.gateway must name a path on moat.gateway', '400 Bad Request', 'request');
    }
    return this.route(client, inner, new URL(`http://${GATEWAY_HOST}${inner.target}`), channel, attempt);
  }

  /**
   * CONNECT to a host with method and path rules: the name is judged, and (when the gateway dials
   * itself) the address, before the client hears "200"; then its TLS is inspected with the task's
   * CA, and each request judged. Without the task's CA (a task made before its rules) nothing passes.
   */
  private async inspectRuled(client: Socket, rest: Buffer, channel: TaskChannel, target: Target, attempt: Attempt): Promise<void> {
    if (target.kind !== 'name' || !channel.leaf)
      return this.refuseTunnel(client, rest, channel, attempt, "method and path rules need the task's own CA (recreate the task)", 'policy');
    if (!proxyFor(channel.upstream, 'https', target, attempt.port)) {
      const chosen = await this.choose(channel, target, attempt.port);
      if ('denied' in chosen) return this.refuseTunnel(client, rest, channel, attempt, chosen.denied, chosen.kind);
    }
    if (client.destroyed) return;
    client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    // Plain HTTP inside the tunnel (`CONNECT host:80`, as Node's proxy agents send for http://
    // URLs) is read request by request too, never relayed blind; anything else must be TLS.
    const first = rest.length > 0 ? rest : await firstBytes(client);
    if (first === undefined) return void client.destroy();
    if (first[0] !== TLS_HANDSHAKE) return this.plainInTunnel(client, first, channel, target.name, attempt.port);
    this.inspect(client, first, channel, target.name, attempt.port);
  }

  /**
   * Plain HTTP inside a tunnel the client opened to host:port: its request is judged and sent
   * exactly as the same request in absolute form would be (forward()), one request per tunnel
   * (nothing after its body goes upstream; the tunnel closes with the answer).
   */
  private async plainInTunnel(client: Socket, first: Buffer, channel: TaskChannel, host: string, port: number): Promise<void> {
    client.unshift(first);
    const inner = await readRequestHead(client, 30_000);
    if (!inner) return void client.destroy();
    const attempt: Attempt = { method: inner.method, host, port, path: auditPath(inner.target), started: Date.now(), up: 0, down: 0 };
    // Origin form only: an absolute URI inside could name another host than the tunnel's.
    if (!inner.target.startsWith('/') || inner.method === 'CONNECT')
      return this.deny(client, channel, attempt, 'invalid request target in a tunnel (only origin-form paths)', '400 Bad Request', 'request');
    const authority = port === 80 ? host : `${host}:${port}`;
    return this.forward(client, { ...inner, target: `http://${authority}${inner.target}` }, channel);
  }

  /**
   * A refused CONNECT: a 403 (or 502) with the reason. Except to port 80, where a client that
   * tunnels plain HTTP (Node's fetch through a proxy does) shows nothing of a refused CONNECT but
   * everything of an HTTP answer: there the tunnel opens to moat alone, the request inside it is
   * read (never sent anywhere) and answered with the same refusal.
   */
  private async refuseTunnel(client: Socket, rest: Buffer, channel: TaskChannel, attempt: Attempt, rule: string, kind: DenialKind): Promise<void> {
    if (attempt.port !== 80) return this.deny(client, channel, attempt, rule, this.statusOf(kind), kind);
    this.finish(channel, attempt, false, rule);
    client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    if (rest.length > 0) client.unshift(rest);
    const inner = await readRequestHead(client, 5_000);
    if (!inner) return void client.destroy();
    client.end(denialResponse(this.statusOf(kind), denialSentence(channel.task, attempt.host, attempt.port, rule, kind), rule, kind));
  }

  /**
   * The name decision, and for a task that asks (egress.ask) a name neither allowed nor denied is
   * held for a human's answer first; nothing is resolved or dialled while it waits.
   */
  private async decideName(channel: TaskChannel, target: Target, attempt: Attempt): Promise<Decision & { asked?: string }> {
    const decision = decideTarget(channel.policy(), target, attempt.port);
    if (decision.allowed || !channel.ask || !decision.rule.startsWith('not in allowlist')) return decision;
    const asked = await channel.ask({ method: attempt.method, host: attempt.host, port: attempt.port });
    if (!asked.allowed) return asked;
    // The answer is in the audit line beside the rule that now admits the host.
    const again = decideTarget(channel.policy(), target, attempt.port);
    return again.allowed ? { ...again, asked: asked.rule } : again;
  }

  private readHello(
    client: Socket,
    initial: Buffer,
  ): Promise<({ kind: 'sni'; name: string } | { kind: 'no-sni' | 'not-tls' | 'incomplete' }) & { data: Buffer }> {
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
    const attempt: Attempt = {
      method: head.method,
      host: url?.hostname ?? head.target.slice(0, 255),
      port: url ? Number(url.port || 80) : 0,
      started: Date.now(),
      up: 0,
      down: 0,
    };
    if (!url || url.protocol !== 'http:' || !head.target.startsWith('http://') || url.username || url.password) {
      return this.deny(client, channel, attempt, 'only absolute http:// requests and CONNECT are proxied', '400 Bad Request', 'request');
    }
    if (url.hostname.toLowerCase() === GATEWAY_HOST) return this.route(client, head, url, channel, attempt);
    const target = parseTarget(url.hostname);
    if (!target) return this.deny(client, channel, attempt, 'invalid host', '400 Bad Request', 'request');
    // The Host header must name the target: otherwise a shared front end could route elsewhere.
    const hosts = header(head, 'host');
    const expected = url.host.toLowerCase();
    const expectedNoPort = url.port === '' ? expected : expected.replace(/:80$/, '');
    if (hosts.length !== 1 || ![expected, expectedNoPort, `${url.hostname.toLowerCase()}:80`].includes(hosts[0]!.toLowerCase())) {
      return this.deny(
        client,
        channel,
        attempt,
        `Host header ${JSON.stringify((hosts[0] ?? '').slice(0, 255))} is not the request target`,
        '403 Forbidden',
        'request',
      );
    }
    if (header(head, 'transfer-encoding').length > 0)
      return this.deny(client, channel, attempt, 'chunked request bodies are not proxied', '411 Length Required', 'request');
    const lengths = header(head, 'content-length');
    if (lengths.length > 1 || (lengths[0] !== undefined && !/^\d{1,15}$/.test(lengths[0])))
      return this.deny(client, channel, attempt, 'bad Content-Length', '400 Bad Request', 'request');
    const bodyLength = Number(lengths[0] ?? 0);
    const path = `${url.pathname}${url.search}`;
    attempt.path = auditPath(path);
    // The name first (a task that asks holds an undecided one for a human here), then its rules.
    const byName = await this.decideName(channel, target, attempt);
    if (!byName.allowed) return this.deny(client, channel, attempt, byName.rule);
    const verdict = judgeRequest(channel.policy(), target, attempt.port, { method: head.method, target: path, bodyLength });
    if (!verdict.allowed) return this.deny(client, channel, attempt, verdict.rule, verdict.status, verdict.kind);
    // Under method and path rules the target must already be in the spelling that goes upstream:
    // nothing (dot segments, backslashes, a default port, odd escapes) may be read two ways.
    const authority = `http://${url.host}`;
    if (verdict.ruled && !(head.target.slice(0, authority.length).toLowerCase() === authority && head.target.slice(authority.length) === path)) {
      return this.deny(
        client,
        channel,
        attempt,
        `rule: request target ${JSON.stringify(head.target.slice(0, 255))} is not in canonical form`,
        '403 Forbidden',
        'rule',
      );
    }

    const reached = await this.reach(channel, target, attempt.port, 'http');
    if ('denied' in reached) return this.deny(client, channel, attempt, reached.denied, this.statusOf(reached.kind), reached.kind);
    const upstream = reached.socket;
    if (reached.address) attempt.address = reached.address;

    const hop = new Set(['connection', 'proxy-connection', 'proxy-authorization', 'keep-alive', 'te', 'upgrade']);
    // Through the host's proxy: the absolute form, and the proxy's credentials, which the sandbox never sees.
    const requestLine = reached.proxy
      ? `${head.method} http://${url.host}${url.pathname}${url.search} HTTP/1.1`
      : `${head.method} ${url.pathname}${url.search} HTTP/1.1`;
    const proxyAuth = reached.proxy?.authorization ? [`proxy-authorization: ${reached.proxy.authorization}`] : [];
    const lines = [requestLine, ...head.headers.filter(([k]) => !hop.has(k)).map(([k, v]) => `${k}: ${v}`), ...proxyAuth, 'connection: close', '', ''];
    const requestHead = Buffer.from(lines.join('\r\n'), 'latin1');
    upstream.write(requestHead);
    attempt.up += requestHead.length;
    await this.exchange(client, upstream, head.rest, bodyLength, attempt);
    this.finish(channel, attempt, true, byName.asked ? `${reached.rule} (${byName.asked})` : reached.rule);
  }
}
