import { promises as dns } from 'node:dns';
import { connect, type Socket } from 'node:net';
import { decideAddress, decideTarget, type EgressPolicy, type Target } from '../domain/egress-policy.js';
import { formatIp, parseIp, type IpAddress } from '../domain/ip-address.js';
import type { BoundSecret } from '../domain/bound-secret.js';
import type { AuditRecord } from './audit.js';

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

export interface Attempt {
  method: string;
  host: string;
  port: number;
  sni?: string;
  address?: string;
  started: number;
  up: number;
  down: number;
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
      ...(attempt.sni !== undefined ? { sni: attempt.sni } : {}),
      ...(attempt.address !== undefined ? { address: attempt.address } : {}),
      decision: allowed ? 'allowed' : 'denied',
      rule,
      bytesUp: attempt.up,
      bytesDown: attempt.down,
      durationMs: Date.now() - attempt.started,
    });
  }

  protected deny(client: Socket, channel: TaskChannel, attempt: Attempt, rule: string, status = '403 Forbidden'): void {
    const body = `moat: egress denied (${rule})\n`;
    // The audit line first: by the time the client reads the refusal, the attempt is on record.
    this.finish(channel, attempt, false, rule);
    client.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }

  /** Name check, then resolution, then address check; returns the address to dial or a reason. */
  protected async choose(channel: TaskChannel, target: Target, port: number): Promise<{ ip: IpAddress; rule: string } | { denied: string }> {
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

  protected dial(ip: IpAddress, port: number): Promise<Socket | undefined> {
    // No Nagle delay: a proxy must not hold back the small writes of a handshake or a ping.
    return this.open(() => connect({ host: formatIp(ip), port, family: ip.family, noDelay: true }), 'connect');
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

  protected splice(client: Socket, upstream: Socket, attempt: Attempt, onClose: () => void): void {
    client.on('data', (chunk: Buffer) => (attempt.up += chunk.length));
    upstream.on('data', (chunk: Buffer) => (attempt.down += chunk.length));
    client.pipe(upstream);
    upstream.pipe(client);
    this.closeTogether(client, upstream, onClose);
    client.resume();
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
