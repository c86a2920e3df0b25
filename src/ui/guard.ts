import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * The dashboard is a door into the host that every page the user's browser opens can knock on.
 * Each request passes these checks before anything else runs:
 * - Host must name this server by a loopback name or the address it listens on (DNS rebinding: a
 *   foreign site whose name resolves to 127.0.0.1 sends its own name as Host);
 * - the token, from the cookie the first visit set (SameSite=Strict: never sent on another site's
 *   request) or, on that first visit only, from the URL;
 * - a request that changes anything must be a same-origin POST with a JSON body (Origin equal to
 *   this server; a cross-site form cannot send JSON, and fetch from elsewhere cannot pass Origin);
 * - no CORS headers, ever; a CSP without inline script on every answer.
 */
export interface GuardOptions {
  token: string;
  port: number;
  /** The address listened on; loopback names are accepted as Host in any case. */
  listen: string;
}

export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function cookieName(port: number): string {
  // Cookies are shared across the ports of a host: the name keeps two dashboards apart.
  return `moat_ui_${port}`;
}

export function securityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('Cache-Control', 'no-store');
}

function sameToken(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}

export function allowedHosts(options: GuardOptions): Set<string> {
  const names = ['127.0.0.1', 'localhost', '[::1]'];
  if (!names.includes(options.listen)) names.push(options.listen.includes(':') ? `[${options.listen}]` : options.listen);
  return new Set(names.map((n) => `${n}:${options.port}`));
}

export type Verdict = { ok: true; setCookie?: string } | { ok: false; status: number; reason: string };

/** Decides whether a request may go on; `url` is the parsed request URL. */
export function check(req: IncomingMessage, url: URL, options: GuardOptions, hosts: Set<string>): Verdict {
  const host = (req.headers.host ?? '').toLowerCase();
  if (!hosts.has(host)) return { ok: false, status: 403, reason: 'this dashboard answers only to its loopback address (Host header refused)' };
  const fetchSite = req.headers['sec-fetch-site'];
  if (fetchSite === 'cross-site') return { ok: false, status: 403, reason: 'cross-site request refused' };
  const changing = req.method !== 'GET' && req.method !== 'HEAD';
  if (changing) {
    if (req.method !== 'POST') return { ok: false, status: 405, reason: 'method not allowed' };
    if (req.headers.origin !== `http://${host}`)
      return { ok: false, status: 403, reason: "a change must come from this dashboard's own page (Origin refused)" };
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) return { ok: false, status: 415, reason: 'a change is a JSON request' };
  } else if (req.headers.origin !== undefined && req.headers.origin !== `http://${host}`) {
    return { ok: false, status: 403, reason: 'Origin refused' };
  }
  const name = cookieName(options.port);
  if (sameToken(cookieOf(req, name), options.token)) return { ok: true };
  // The first visit: the token in the URL becomes a cookie (and the page drops it from the address bar).
  if (!changing && url.pathname === '/' && sameToken(url.searchParams.get('token') ?? undefined, options.token)) {
    return { ok: true, setCookie: `${name}=${options.token}; HttpOnly; SameSite=Strict; Path=/` };
  }
  return { ok: false, status: 403, reason: 'token required: open the URL `moat ui` printed' };
}
