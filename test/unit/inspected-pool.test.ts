import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
import type { TaskChannel } from '../../src/gateway/gateway-core.js';
import { createTaskCa, leafFor } from '../../src/gateway/task-ca.js';
import { makeTestCa } from '../helpers/fixtures.js';

/**
 * The gateway's kept-alive upstream connections to inspected hosts (hosts with method/path rules):
 * requests of one task share them across its client connections, each request still judged before
 * it is sent; another task never gets one of them. In process: the gateway, a loopback upstream
 * that counts its connections, and clients that speak CONNECT + TLS (the task's CA) as a sandbox would.
 */
describe("the gateway's upstream pool for inspected hosts", () => {
  const dir = mkdtempSync(join(tmpdir(), 'moat-pool-'));
  const gateway = new EgressGateway(async (name) => (name === 'rules.test' ? [parseIp('127.0.0.1')!] : []), 5000, [
    readFileSync(makeTestCa(dir, 'rules.test').ca, 'utf8'),
  ]);
  const seen: Array<{ connection: number; line: string }> = [];
  let upstream: HttpsServer;
  let upstreamPort = 0;
  let connections = 0;
  const fronts: Server[] = [];

  /** One task's side of the gateway: a listener whose connections all carry the same channel (scope). */
  async function task(name: string, audit: AuditRecord[]): Promise<{ port: number; ca: string; scope: object; policy: EgressPolicy }> {
    const ca = createTaskCa(join(dir, name), name);
    const policy = buildPolicy('allowlist', ['rules.test', '127.0.0.1/32'], []) as EgressPolicy;
    policy.requests = buildRequestRules([{ host: 'rules.test', methods: ['GET'], paths: ['/ok/'], from: 'user' }]) as RequestRule[];
    const scope = {};
    const front = createServer({ allowHalfOpen: true }, (client) => {
      const channel: TaskChannel = { task: name, scope, policy: () => policy, audit: (record) => audit.push(record), leaf: (host) => leafFor(ca, host) };
      void gateway.handle(client, channel);
    });
    fronts.push(front);
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    return { port: (front.address() as AddressInfo).port, ca: ca.cert, scope, policy };
  }

  /** A client connection as a sandbox opens one: CONNECT, then TLS against the task's CA. */
  async function open(front: { port: number; ca: string }): Promise<TLSSocket> {
    const raw: Socket = connect(front.port, '127.0.0.1');
    raw.write(`CONNECT rules.test:${upstreamPort} HTTP/1.1\r\nHost: rules.test:${upstreamPort}\r\n\r\n`);
    await new Promise<void>((resolve, reject) => {
      let head = '';
      const onData = (chunk: Buffer) => {
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        raw.off('data', onData);
        return head.startsWith('HTTP/1.1 200') ? resolve() : reject(new Error(head.split('\r\n')[0]));
      };
      raw.on('data', onData);
    });
    return tlsConnect({ socket: raw, servername: 'rules.test', ca: readFileSync(front.ca) });
  }

  /** One request on a kept-alive client connection; its status once the whole answer (Content-Length) is read. */
  function ask(tls: TLSSocket, path: string, method = 'GET'): Promise<number> {
    return new Promise((resolve) => {
      let answer = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        answer = Buffer.concat([answer, chunk]);
        const end = answer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length: *(\d+)/i.exec(answer.subarray(0, end).toString('latin1'))?.[1] ?? 0);
        if (answer.length - end - 4 < length) return;
        tls.off('data', onData);
        resolve(Number(answer.subarray(9, 12).toString()));
      };
      tls.on('data', onData);
      tls.write(`${method} ${path} HTTP/1.1\r\nHost: rules.test:${upstreamPort}\r\n\r\n`);
    });
  }

  /** One client connection (as one curl would make) with one request: its status. */
  async function request(front: { port: number; ca: string }, method: string, path: string): Promise<number> {
    const tls = await open(front);
    const status = await ask(tls, path, method);
    tls.destroy();
    return status;
  }

  beforeAll(async () => {
    const cert = { key: readFileSync(join(dir, 'leaf.key')), cert: readFileSync(join(dir, 'leaf.pem')) };
    upstream = createHttpsServer({ ...cert, keepAliveTimeout: 30_000 }, (req, res) => {
      seen.push({ connection: (req.socket as Socket & { number?: number }).number ?? -1, line: `${req.method} ${req.url}` });
      res.end('ok\n');
    });
    upstream.on('secureConnection', (socket: Socket & { number?: number }) => (socket.number = ++connections));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    upstreamPort = (upstream.address() as AddressInfo).port;
  });
  afterAll(() => {
    for (const front of fronts) front.close();
    upstream.closeAllConnections();
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("one task's requests on separate client connections share one upstream connection, each judged first", async () => {
    const audit: AuditRecord[] = [];
    const a = await task('a', audit);
    const before = connections;
    expect(await request(a, 'GET', '/ok/1')).toBe(200);
    expect(await request(a, 'POST', '/ok/2')).toBe(403);
    expect(await request(a, 'GET', '/elsewhere')).toBe(403);
    expect(await request(a, 'GET', '/ok/3')).toBe(200);
    // Only the judged requests reached the upstream, on one connection opened for them.
    expect(connections - before).toBe(1);
    const mine = seen.filter((s) => s.connection > before);
    expect(mine.map((s) => s.line)).toEqual(['GET /ok/1', 'GET /ok/3']);
    expect(new Set(mine.map((s) => s.connection)).size).toBe(1);
    // Every request is audited, the reused connection's ones with the address it was opened to.
    const lines = audit.filter((r) => r.path !== undefined).map((r) => `${r.method} ${r.path} ${r.decision} ${r.address ?? '-'}`);
    expect(lines).toEqual(['GET /ok/1 allowed 127.0.0.1', 'POST /ok/2 denied -', 'GET /elsewhere denied -', 'GET /ok/3 allowed 127.0.0.1']);
  });

  it("another task never rides on the first task's connections", async () => {
    const a = await task('a2', []);
    const b = await task('b', []);
    expect(await request(a, 'GET', '/ok/a')).toBe(200);
    const afterA = connections;
    expect(await request(b, 'GET', '/ok/b')).toBe(200);
    expect(connections).toBe(afterA + 1);
    const [first, second] = [seen.find((s) => s.line === 'GET /ok/a')!, seen.find((s) => s.line === 'GET /ok/b')!];
    expect(first.connection).not.toBe(second.connection);
  });

  it('a kept connection is held to the policy of now: an address denied since it was opened is refused', async () => {
    const audit: AuditRecord[] = [];
    const d = await task('d', audit);
    // One client connection, two requests: the second comes after the policy changed.
    const tls = await open(d);
    expect(await ask(tls, '/ok/d1')).toBe(200);
    d.policy.deny = (buildPolicy('allowlist', [], ['127.0.0.1/32']) as EgressPolicy).deny;
    expect(await ask(tls, '/ok/d2')).toBe(403);
    tls.destroy();
    expect(seen.map((s) => s.line)).not.toContain('GET /ok/d2');
    expect(audit.at(-1)).toMatchObject({ path: '/ok/d2', decision: 'denied', rule: 'deny 127.0.0.1/32' });
  });

  it('a released task ends its kept-alive upstream connections', async () => {
    const c = await task('c', []);
    expect(await request(c, 'GET', '/ok/c')).toBe(200);
    const open = () => new Promise<number>((resolve) => upstream.getConnections((_e, count) => resolve(count)));
    const kept = await open();
    expect(kept).toBeGreaterThan(0);
    gateway.release(c.scope);
    // The upstream sees the close a moment later.
    for (let waited = 0; (await open()) >= kept && waited < 3000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await open()).toBe(kept - 1);
  });
});
