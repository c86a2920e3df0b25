import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPolicy, type EgressPolicy } from '../../src/domain/egress-policy.js';
import { buildRequestRules, type RequestRule } from '../../src/domain/request-rules.js';
import { parseIp } from '../../src/domain/ip-address.js';
import type { AuditRecord } from '../../src/gateway/audit.js';
import { EgressGateway } from '../../src/gateway/egress-gateway.js';
import { createTaskCa, leafFor } from '../../src/gateway/task-ca.js';
import { makeTestCa } from '../helpers/fixtures.js';

/**
 * A WebSocket through an inspected connection with a bound secret, in process: the secret's
 * header goes on the handshake only (the frames after the 101 pass as they are, placeholder and
 * all), and an upgrade to anything but WebSocket is refused before it reaches the upstream.
 */
describe('WebSocket handshakes on an inspected connection with a bound secret', () => {
  const dir = mkdtempSync(join(tmpdir(), 'moat-ws-'));
  const gateway = new EgressGateway(async (name) => (name === 'rules.test' ? [parseIp('127.0.0.1')!] : []), 5000, [
    readFileSync(makeTestCa(dir, 'rules.test').ca, 'utf8'),
  ]);
  const handshakes: Array<{ url: string; authorization?: string }> = [];
  const frames: string[] = [];
  const audit: AuditRecord[] = [];
  let upstream: HttpsServer;
  let front: Server;
  let upstreamPort = 0;
  let ca = '';

  beforeAll(async () => {
    upstream = createHttpsServer({ key: readFileSync(join(dir, 'leaf.key')), cert: readFileSync(join(dir, 'leaf.pem')) }, (req, res) => {
      handshakes.push({ url: `plain ${req.url}` });
      res.end('not upgraded\n');
    });
    upstream.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      handshakes.push({ url: String(req.url), ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.on('data', (chunk: Buffer) => {
        frames.push(chunk.toString());
        socket.end(`echo:${chunk.toString()}`);
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    upstreamPort = (upstream.address() as AddressInfo).port;
    const taskCa = createTaskCa(join(dir, 'task'), 'ws');
    ca = taskCa.cert;
    const policy = buildPolicy('allowlist', ['rules.test', '127.0.0.1/32'], []) as EgressPolicy;
    policy.requests = buildRequestRules([{ host: 'rules.test', methods: ['GET'], paths: ['/ws/'], from: 'user' }]) as RequestRule[];
    const secret = {
      name: 'TOKEN',
      placeholder: 'moat-placeholder-ws',
      hosts: [`rules.test:${upstreamPort}`],
      header: 'Authorization',
      format: 'Bearer {value}',
      intercept: true,
    };
    const scope = {};
    front = createServer({ allowHalfOpen: true }, (client) => {
      void gateway.handle(client, {
        task: 'ws',
        scope,
        policy: () => policy,
        audit: (record) => audit.push(record),
        leaf: (host) => leafFor(taskCa, host),
        secrets: () => [{ secret, value: 'real-value' }],
      });
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => {
    front.close();
    upstream.closeAllConnections();
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** CONNECT, TLS against the task's CA, one handshake and then `after`; everything the client reads until the close. */
  async function exchange(upgrade: string, path: string, after: string): Promise<string> {
    const raw: Socket = connect((front.address() as AddressInfo).port, '127.0.0.1');
    raw.write(`CONNECT rules.test:${upstreamPort} HTTP/1.1\r\nHost: rules.test:${upstreamPort}\r\n\r\n`);
    await new Promise((resolve) => raw.once('data', resolve));
    const tls: TLSSocket = tlsConnect({ socket: raw, servername: 'rules.test', ca: readFileSync(ca) });
    let read = '';
    tls.on('data', (chunk: Buffer) => {
      read += chunk.toString();
      if (read.includes('\r\n\r\n') && after && !read.includes('echo:') && read.startsWith('HTTP/1.1 101')) tls.write(after);
    });
    tls.write(
      `GET ${path} HTTP/1.1\r\nHost: rules.test:${upstreamPort}\r\nUpgrade: ${upgrade}\r\nConnection: Upgrade\r\nAuthorization: Bearer moat-placeholder-ws\r\n\r\n`,
    );
    await new Promise((resolve) => tls.once('close', resolve));
    return read;
  }

  it("puts the secret's header on the handshake only; frames after the 101 pass unchanged", async () => {
    const read = await exchange('websocket', '/ws/live', 'token=moat-placeholder-ws');
    expect(read.startsWith('HTTP/1.1 101 Switching Protocols')).toBe(true);
    expect(read).toContain('echo:token=moat-placeholder-ws');
    expect(handshakes).toContainEqual({ url: '/ws/live', authorization: 'Bearer real-value' });
    expect(frames).toEqual(['token=moat-placeholder-ws']);
    // Audited when both sides have closed.
    for (let i = 0; i < 50 && !audit.some((r) => r.path === '/ws/live'); i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(audit.find((r) => r.path === '/ws/live')).toMatchObject({
      method: 'GET',
      decision: 'allowed',
      status: 101,
      rule: 'rule rules.test GET /ws/ with TOKEN',
    });
  });

  it('refuses an upgrade to anything but WebSocket, and a handshake outside the rules, before the upstream hears of it', async () => {
    const before = handshakes.length;
    expect(await exchange('h2c', '/ws/h2', '')).toMatch(/^HTTP\/1\.1 400 moat refused: only WebSocket upgrades are relayed/);
    expect(await exchange('websocket', '/elsewhere', '')).toMatch(/^HTTP\/1\.1 403 moat refused: rule rules.test GET \/ws\/: path \/elsewhere/);
    expect(handshakes.length).toBe(before);
    expect(audit.filter((r) => r.decision === 'denied').map((r) => `${r.method} ${r.path}`)).toEqual(['GET /ws/h2', 'GET /elsewhere']);
  });
});
