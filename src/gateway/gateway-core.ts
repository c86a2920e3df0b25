import { promises as dns } from 'node:dns';
import { connect, type Socket } from 'node:net';
import { inboxes, recycleWhenClosed, relay, relayBuffer, RelayInbox } from './relay.js';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { decideAddress, decideTarget, type EgressPolicy, type Target } from '../domain/egress-policy.js';
import { formatIp, parseIp, type IpAddress } from '../domain/ip-address.js';
import type { BoundSecret } from '../domain/bound-secret.js';
import type { AuditRecord } from './audit.js';
import { denialResponse, denialSentence, type DenialKind } from './denials.js';
import { proxyFor, tunnelVia, type UpstreamProxy, type UpstreamProxyConfig } from './upstream-proxy.js';

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
  /**
   * The same object for every connection of one task (its listener): what the gateway keeps per
   * task (kept-alive upstream connections) is keyed by it, never shared between tasks.
   */
  scope?: object;
  policy: () => EgressPolicy;
  audit: (record: AuditRecord) => void;
  /** Bound secrets of the task, with their values when moat has handed them over. */
  secrets?: () => Array<{ secret: BoundSecret; value?: string }>;
  /** A leaf certificate from the task's own CA, for a bound host whose secret asks for interception. */
  leaf?: (host: string) => { key: string; cert: string };
  /** The host's upstream proxy, from the user's config or moat's environment. */
  upstream?: UpstreamProxyConfig;
  /** Extra CAs (PEM) the user trusts for the gateway's own TLS to bound hosts. */
  trustCa?: string[];
  /**
   * egress.ask: a host the policy neither allows nor denies waits for a human's answer
   * (pending-queue.ts). Allowed means the channel's policy now admits it.
   */
  ask?: (request: { method: string; host: string; port: number }) => Promise<{ allowed: boolean; rule: string }>;
}

/** Where an allowed connection goes, or why it may not. */
export type Choice = { ip: IpAddress; rule: string } | { denied: string; kind: DenialKind };

export interface Attempt {
  method: string;
  host: string;
  port: number;
  /** The request's path (query redacted), when the gateway reads requests. */
  path?: string;
  sni?: string;
  address?: string;
  started: number;
  up: number;
  down: number;
  /** On a route: the upstream's response status, and whether the response ended early. */
  status?: number;
  cut?: boolean;
}

/** What every path through the gateway shares: the decision, the audit line, the connection plumbing. */
export class GatewayCore {
  constructor(
    private readonly resolve: Resolve,
    protected readonly connectTimeoutMs = 10_000,
    /** Extra CAs the gateway trusts for routes' upstream TLS (tests use their own CA). */
    protected readonly extraCa: string[] = [],
  ) {}

  protected finish(channel: TaskChannel, attempt: Attempt, allowed: boolean, rule: string): void {
    channel.audit({
      time: new Date(attempt.started).toISOString(),
      task: channel.task,
      method: attempt.method,
      host: attempt.host,
      port: attempt.port,
      ...(attempt.path !== undefined ? { path: attempt.path } : {}),
      ...(attempt.sni !== undefined ? { sni: attempt.sni } : {}),
      ...(attempt.address !== undefined ? { address: attempt.address } : {}),
      ...(attempt.status !== undefined ? { status: attempt.status } : {}),
      ...(attempt.cut ? { cut: true as const } : {}),
      decision: allowed ? 'allowed' : 'denied',
      rule,
      bytesUp: attempt.up,
      bytesDown: attempt.down,
      durationMs: Date.now() - attempt.started,
    });
  }

  /**
   * Refuses with a status, a Proxy-Status header and a body that says it was moat, why, and what
   * a human can do: an agent reads the reason instead of guessing at a reset.
   */
  protected deny(client: Socket, channel: TaskChannel, attempt: Attempt, rule: string, status = '403 Forbidden', kind: DenialKind = 'policy'): void {
    // The audit line first: by the time the client reads the refusal, the attempt is on record.
    this.finish(channel, attempt, false, rule);
    client.end(denialResponse(status, denialSentence(channel.task, attempt.host, attempt.port, rule, kind), rule, kind));
  }

  /** The status line that goes with a kind of refusal. */
  protected statusOf(kind: DenialKind): string {
    return kind === 'policy' || kind === 'address' || kind === 'rule' ? '403 Forbidden' : kind === 'request' ? '400 Bad Request' : '502 Bad Gateway';
  }

  /** Name check, then resolution, then address check; returns the address to dial or a reason. */
  protected async choose(channel: TaskChannel, target: Target, port: number): Promise<Choice> {
    const policy = channel.policy();
    const byName = decideTarget(policy, target, port);
    if (!byName.allowed) return { denied: byName.rule, kind: 'policy' };
    const addresses = target.kind === 'ip' ? [target.ip] : await this.resolve(target.name);
    if (addresses.length === 0) return { denied: 'name did not resolve', kind: 'dns' };
    let last = 'no usable address';
    for (const ip of addresses) {
      const byAddress = decideAddress(policy, ip, port);
      if (byAddress.allowed) return { ip, rule: byName.rule };
      last = byAddress.rule;
    }
    return { denied: last, kind: 'address' };
  }

  /**
   * An allowed connection's upstream, opened before the client is told anything: through the
   * host's proxy when it has one for this target (the proxy resolves the name; an IP literal is
   * still checked here), otherwise resolved and address-checked here, then dialled. The name was
   * judged by the caller; nothing is looked up for a denied name.
   */
  protected async reach(
    channel: TaskChannel,
    target: Target,
    port: number,
    scheme: 'http' | 'https',
    options: { relay?: boolean } = {},
  ): Promise<{ socket: Socket; rule: string; address?: string; proxy?: UpstreamProxy } | { denied: string; kind: DenialKind }> {
    const proxy = proxyFor(channel.upstream, scheme, target, port);
    if (proxy) {
      const byName = decideTarget(channel.policy(), target, port);
      if (!byName.allowed) return { denied: byName.rule, kind: 'policy' };
      if (target.kind === 'ip') {
        const byAddress = decideAddress(channel.policy(), target.ip, port);
        if (!byAddress.allowed) return { denied: byAddress.rule, kind: 'address' };
      }
      // Plain HTTP goes to the proxy as an absolute-URI request: the caller writes it.
      if (scheme === 'http') {
        const socket = await this.open(() => connect({ host: proxy.host, port: proxy.port, noDelay: true }), 'connect');
        return socket
          ? { socket, rule: `${byName.rule} via proxy ${proxy.label}`, proxy }
          : { denied: `the upstream proxy ${proxy.label} did not answer`, kind: 'proxy' };
      }
      const tunnel = await tunnelVia(proxy, target, port, this.connectTimeoutMs);
      if ('failed' in tunnel) return { denied: tunnel.failed, kind: 'proxy' };
      return { socket: tunnel.socket, rule: `${byName.rule} via proxy ${proxy.label}`, proxy };
    }
    const chosen = await this.choose(channel, target, port);
    if ('denied' in chosen) return chosen;
    const address = formatIp(chosen.ip);
    const socket = await this.dial(chosen.ip, port, options);
    if (!socket) return { denied: `could not connect to ${address}:${port}`, kind: 'connect' };
    return { socket, rule: chosen.rule, address };
  }

  /** The CAs the gateway's own TLS trusts: the public ones, and what the user added. */
  protected caFor(channel: TaskChannel): string[] {
    return [...rootCertificates, ...this.extraCa, ...(channel.trustCa ?? [])];
  }

  private readonly contexts = new WeakMap<object, SecureContext>();
  private readonly noExtraCa = {};

  /**
   * A TLS context with those CAs, made once per set of them: parsing the ~140 public roots again
   * for every upstream connection cost each inspected request about 50 ms.
   */
  protected secureContextFor(channel: TaskChannel): SecureContext {
    const key = channel.trustCa ?? this.noExtraCa;
    let context = this.contexts.get(key);
    if (!context) {
      context = createSecureContext({ ca: this.caFor(channel) });
      this.contexts.set(key, context);
    }
    return context;
  }

  protected dial(ip: IpAddress, port: number, options: { relay?: boolean } = {}): Promise<Socket | undefined> {
    // No Nagle delay: a proxy must not hold back the small writes of a handshake or a ping.
    const base = { host: formatIp(ip), port, family: ip.family, noDelay: true };
    if (!options.relay) return this.open(() => connect(base), 'connect');
    // A tunnel's upstream reads into a buffer of its own, reused: no allocation per read, and
    // reads four times the default size. What arrives before the relay starts is kept.
    const inbox = new RelayInbox();
    return this.open(() => {
      const buffer = relayBuffer();
      const socket = connect({ ...base, onread: { buffer, callback: (length, read) => inbox.receive(length, read) } });
      inboxes.set(socket, inbox);
      recycleWhenClosed(socket, buffer);
      return socket;
    }, 'connect');
  }

  /** A connection that is ready (connected, or TLS established) within the timeout, or undefined. */
  protected open(make: () => Socket, ready: 'connect' | 'secureConnect'): Promise<Socket | undefined> {
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

  /**
   * Relays both ways until either side closes. The byte counts come from the sockets' own
   * counters at the end: a listener per chunk would cost the relay a tenth of its throughput.
   */
  protected splice(client: Socket, upstream: Socket, attempt: Attempt, onClose: () => void): void {
    const clientRead = client.bytesRead;
    const upstreamRead = upstream.bytesRead;
    const upBefore = attempt.up;
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      const inbox = inboxes.get(from);
      if (inbox) inbox.relayTo(from, to);
      else relay(from, to);
    }
    this.closeTogether(client, upstream, () => {
      attempt.up = upBefore + client.bytesRead - clientRead;
      attempt.down += upstream.bytesRead - upstreamRead;
      onClose();
    });
  }

  /** When either side of a relayed connection closes or fails, both go, once. */
  protected closeTogether(client: Socket, upstream: Socket, onClose: () => void): void {
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
  }

  /**
   * After a request head went upstream: forwards exactly the declared body (what arrived with the
   * head, then from the client), nothing after it, since a second request on the same connection
   * would reach this upstream without being judged; relays the answer; resolves when either side closes.
   */
  protected exchange(client: Socket, upstream: Socket, early: Buffer, bodyLength: number, attempt: Attempt): Promise<void> {
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
    return new Promise<void>((resolve) => this.closeTogether(client, upstream, resolve));
  }
}
