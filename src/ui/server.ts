import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MoatError } from '../errors.js';
import type { MoatContext } from '../service/context.js';
import { DashboardApi, errorAnswer } from './api.js';
import { ASSETS } from './assets.js';
import { allowedHosts, check, securityHeaders, type GuardOptions } from './guard.js';
import { LiveFeed } from './live.js';
import { streamLogs } from './log-stream.js';

export interface DashboardOptions {
  /** Address to listen on; loopback unless the user says otherwise (and then only with a stated token). */
  listen?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** The token every request must carry; a random one when not given. */
  token?: string;
  /** The environment tasks are handled in (MOAT_HOME, MOAT_CONFIG, engine settings). */
  env: NodeJS.ProcessEnv;
}

export interface Dashboard {
  /** The address without the token. */
  url: string;
  /** The first-visit address, token included: for the user's eyes (or browser) only. */
  loginUrl: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const MAX_BODY = 64 * 1024;

export function isLoopback(address: string): boolean {
  return LOOPBACK.has(address) || /^127\.\d+\.\d+\.\d+$/.test(address);
}

/** Starts the dashboard; it serves every task of the context's moat home. */
export async function startDashboard(ctx: MoatContext, options: DashboardOptions): Promise<Dashboard> {
  const listen = options.listen ?? '127.0.0.1';
  if (!isLoopback(listen) && !options.token) {
    throw new MoatError('E_USAGE', `--listen ${listen} is not a loopback address; a dashboard reachable from the network needs a token you chose`, {
      hint: 'give one with --token-file FILE or MOAT_UI_TOKEN, and know that anyone who has it can merge and allow',
    });
  }
  const token = options.token ?? randomBytes(24).toString('base64url');
  if (token.length < 16 || !/^[A-Za-z0-9._~-]+$/.test(token))
    throw new MoatError('E_USAGE', 'the dashboard token must be at least 16 URL-safe characters', {
      hint: 'e.g. openssl rand -hex 24 > FILE, then --token-file FILE',
    });
  const api = new DashboardApi(ctx, options.env);
  const live = new LiveFeed(ctx);
  const guard: GuardOptions = { token, listen, port: 0 };
  let hosts = new Set<string>();
  const server: Server = createServer((req, res) => {
    securityHeaders(res);
    handle(req, res).catch((error: unknown) => {
      const { status, body } = errorAnswer(error);
      if (!res.headersSent) json(res, status, body);
      else res.end();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    const verdict = check(req, url, guard, hosts);
    if (!verdict.ok) {
      req.resume();
      res.writeHead(verdict.status, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`${verdict.reason}\n`);
      return;
    }
    if (verdict.setCookie) {
      // Set the cookie and drop the token from the address bar (and from the history).
      res.writeHead(303, { 'Set-Cookie': verdict.setCookie, Location: '/' });
      res.end();
      return;
    }
    const asset = ASSETS[url.pathname === '/' ? '/index.html' : url.pathname];
    if (req.method === 'GET' && asset) {
      res.writeHead(200, { 'Content-Type': asset.type });
      res.end(asset.body);
      return;
    }
    if (req.method === 'GET') {
      const q = url.searchParams;
      switch (url.pathname) {
        case '/api/events':
          return live.add(res);
        case '/api/tasks':
          return json(res, 200, await api.tasks());
        case '/api/stats':
          return json(res, 200, await api.stats());
        case '/api/pending':
          return json(res, 200, await api.pending());
        case '/api/review':
          return json(res, 200, await api.review(q.get('repoKey'), q.get('task')));
        case '/api/logs':
          return json(res, 200, { text: await api.logs(q.get('repoKey'), q.get('task')) });
        case '/api/logs/stream':
          return streamLogs(res, api, q.get('repoKey'), q.get('task'));
      }
      return json(res, 404, { error: { code: 'E_NOT_FOUND', message: 'no such page' } });
    }
    const body = await readBody(req);
    switch (url.pathname) {
      case '/api/answer':
        return json(res, 200, await api.answer(body));
      case '/api/task':
        return json(res, 200, await api.act(body));
      case '/api/merge':
        return json(res, 200, await api.merge(body));
    }
    return json(res, 404, { error: { code: 'E_NOT_FOUND', message: 'no such action' } });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new MoatError('E_USAGE', `cannot listen on ${listen}:${options.port ?? 0}: ${error.code ?? error.message}`, {
          hint: 'choose another --port, or leave it out for a free one',
          cause: error,
        }),
      ),
    );
    server.listen(options.port ?? 0, listen, () => resolve());
  });
  guard.port = (server.address() as AddressInfo).port;
  hosts = allowedHosts(guard);
  const shown = listen.includes(':') ? `[${listen}]` : listen;
  const url = `http://${shown}:${guard.port}/`;
  return {
    url,
    loginUrl: `${url}?token=${token}`,
    close: async () => {
      live.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new MoatError('E_USAGE', 'request body too large', { hint: 'the dashboard sends small JSON requests' });
    chunks.push(chunk as Buffer);
  }
  try {
    const value = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // said below
  }
  throw new MoatError('E_USAGE', 'the request body must be a JSON object', { hint: 'the dashboard sends small JSON requests' });
}
