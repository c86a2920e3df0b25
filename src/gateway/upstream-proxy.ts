import { connect, type Socket } from 'node:net';
import type { Target } from '../domain/egress-policy.js';
import { cidrContains, formatIp, parseCidr, parseIp } from '../domain/ip-address.js';

/**
 * The host's own way out, when it has one: an HTTP proxy (HTTPS_PROXY/HTTP_PROXY/NO_PROXY, or
 * egress.upstreamProxy in the user's config). The gateway still decides on the name and audits
 * first; only an allowed connection goes to the proxy, which then resolves the name itself. Its
 * credentials stay here: they are sent to the proxy, never to the sandbox.
 */
export interface UpstreamProxyConfig {
  /** For CONNECT tunnels and the gateway's own TLS (routes, interception). */
  https?: string;
  /** For plain http:// requests. */
  http?: string;
  /** Hosts reached directly (with the gateway's address checks), as in NO_PROXY. */
  noProxy?: string[];
}

export interface UpstreamProxy {
  host: string;
  port: number;
  /** `Proxy-Authorization` value, when the proxy URL carries credentials. */
  authorization?: string;
  /** For audit lines and messages: the proxy without its credentials. */
  label: string;
}

/** A proxy URL as the environment or the config gives it; only http:// proxies are supported. */
export function parseProxyUrl(text: string): UpstreamProxy | string {
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    return `"${redactProxy(text)}" is not a proxy URL such as http://proxy.example:3128`;
  }
  if (url.protocol !== 'http:') return `proxy ${url.protocol}// is not supported (use an http:// proxy URL)`;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!host) return `"${redactProxy(text)}" names no proxy host`;
  const port = Number(url.port || 80);
  const authorization = url.username
    ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
    : undefined;
  return { host, port, ...(authorization ? { authorization } : {}), label: `${url.hostname}:${port}` };
}

/** A proxy URL for messages and logs: never its password. */
export function redactProxy(text: string): string {
  return text.replace(/\/\/[^@/]*@/, '//***@');
}

/** NO_PROXY as curl reads it: `*`, names (matching subdomains too, with or without a leading dot), IPs and CIDR blocks; a `:port` narrows. */
export function bypassesProxy(noProxy: string[], target: Target, port: number): boolean {
  const name = target.kind === 'name' ? target.name : formatIp(target.ip);
  for (const raw of noProxy) {
    let entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    const portMatch = /^(.*[^:]):(\d{1,5})$/.exec(entry);
    if (portMatch && !entry.includes('::')) {
      if (Number(portMatch[2]) !== port) continue;
      entry = portMatch[1]!;
    }
    entry = entry.replace(/^\[|\]$/g, '');
    if (target.kind === 'ip') {
      const cidr = entry.includes('/') ? parseCidr(entry) : undefined;
      const ip = cidr ? undefined : parseIp(entry);
      if ((cidr && cidrContains(cidr, target.ip)) || (ip && ip.family === target.ip.family && ip.value === target.ip.value)) return true;
      continue;
    }
    const suffix = entry.replace(/^\*?\./, '');
    if (name === suffix || name.endsWith(`.${suffix}`)) return true;
  }
  return false;
}

/** The proxy an allowed connection goes through, or undefined for a direct connection. */
export function proxyFor(config: UpstreamProxyConfig | undefined, scheme: 'http' | 'https', target: Target, port: number): UpstreamProxy | undefined {
  const url = scheme === 'https' ? config?.https : config?.http;
  if (!url || bypassesProxy(config?.noProxy ?? [], target, port)) return undefined;
  const proxy = parseProxyUrl(url);
  return typeof proxy === 'string' ? undefined : proxy;
}

export function hostPort(target: Target, port: number): string {
  if (target.kind === 'name') return `${target.name}:${port}`;
  const ip = formatIp(target.ip);
  return target.ip.family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Opens a connection to the proxy; undefined if it does not answer within the timeout. */
export function connectProxy(proxy: UpstreamProxy, timeoutMs: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: proxy.host, port: proxy.port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(undefined);
    }, timeoutMs);
    socket.once('connect', () => {
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
 * A tunnel through the proxy (CONNECT), ready for the caller's bytes; or the reason it failed.
 * Bytes that arrived after the proxy's answer (a server that speaks first) are put back.
 */
export async function tunnelVia(proxy: UpstreamProxy, target: Target, port: number, timeoutMs: number): Promise<{ socket: Socket } | { failed: string }> {
  const socket = await connectProxy(proxy, timeoutMs);
  if (!socket) return { failed: `the upstream proxy ${proxy.label} did not answer` };
  const authority = hostPort(target, port);
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${proxy.authorization ? `Proxy-Authorization: ${proxy.authorization}\r\n` : ''}\r\n`);
  return new Promise((resolve) => {
    let buffer = Buffer.alloc(0);
    const done = (value: { socket: Socket } | { failed: string }) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if ('failed' in value) socket.destroy();
      else socket.pause();
      resolve(value);
    };
    const timer = setTimeout(() => done({ failed: `the upstream proxy ${proxy.label} did not answer CONNECT` }), timeoutMs);
    const onClose = () => done({ failed: `the upstream proxy ${proxy.label} closed the connection` });
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buffer.length > 16 * 1024) done({ failed: `the upstream proxy ${proxy.label} sent an oversized answer` });
        return;
      }
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(buffer.subarray(0, end).toString('latin1'))?.[1];
      if (status !== '200') return done({ failed: `the upstream proxy ${proxy.label} answered ${status ?? 'garbage'} to CONNECT ${authority}` });
      const rest = buffer.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      done({ socket });
    };
    socket.on('data', onData);
    socket.on('close', onClose);
  });
}
