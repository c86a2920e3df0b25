import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { DnsStub } from '../helpers/dns-stub.js';
import { captureIO, eventually, makeTestCa, Scratch } from '../helpers/fixtures.js';

/**
 * WebSockets and plain HTTP through CONNECT to a host with method and path rules, in a real
 * sandbox: the handshake is judged like any request (refused ones never reach the upstream),
 * after the upstream's 101 data flows both ways; plain HTTP inside a tunnel is judged request by
 * request, never relayed blind. The upstreams are loopback servers of the test's that record what
 * reaches them.
 */
describe('websockets and plain HTTP in a tunnel, to a host with rules', () => {
  const scratch = new Scratch();
  const dns = new DnsStub({ 'rules.test': '127.0.0.1', 'plain.test': '127.0.0.1' });
  const seen: string[] = [];
  let wss: Server;
  let ruledHttp: Server;
  let plainHttp: Server;
  let moat: Moat;
  let port = 0;
  let httpPort = 0;
  let plainPort = 0;

  const record = (req: IncomingMessage, res: ServerResponse) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => res.end(`upstream saw ${req.method} ${req.url}\n`));
  };
  const listen = (server: Server) => new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

  /** A tiny WebSocket echo: greets first, echoes one masked text frame as "echo:…", then closes. */
  const upgrade = (req: IncomingMessage, socket: Socket) => {
    seen.push(`UPGRADE ${req.method} ${req.url}`);
    const key = String(req.headers['sec-websocket-key'] ?? '');
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    const frame = (text: string) => Buffer.concat([Buffer.from([0x81, text.length]), Buffer.from(text)]);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.write(frame('welcome'));
    let data = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length < 6) return;
      const length = data[1]! & 0x7f;
      if (data.length < 6 + length) return;
      const mask = data.subarray(2, 6);
      const payload = Buffer.from(data.subarray(6, 6 + length).map((b, i) => b ^ mask[i % 4]!)).toString();
      seen.push(`FRAME ${payload}`);
      socket.end(frame(`echo:${payload}`));
    });
    socket.on('error', () => undefined);
  };

  async function run(script: string): Promise<string> {
    const cap = captureIO();
    await moat.exec('ws', ['sh', '-c', script], cap.io, { sync: false });
    return cap.out() + cap.err();
  }
  /** A WebSocket handshake and one masked frame ("hello", zero mask) over TLS through the gateway. */
  const websocket = (method: string, path: string, upgrade = 'websocket') =>
    run(
      `proxy=\${HTTPS_PROXY#http://}; printf '${method} ${path} HTTP/1.1\\r\\nHost: rules.test:${port}\\r\\nUpgrade: ${upgrade}\\r\\nConnection: Upgrade\\r\\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n\\201\\205\\000\\000\\000\\000hello' | ` +
        `timeout 10 openssl s_client -quiet -proxy "\${proxy%/}" -connect rules.test:${port} -servername rules.test -CAfile "$SSL_CERT_FILE" -ign_eof 2>/dev/null`,
    );
  /** Status of a plain http:// request that curl sends inside a CONNECT tunnel (--proxytunnel). */
  const tunnelled = async (args: string) => (await run(`curl -sS -m 10 -p -x "$HTTPS_PROXY" -o /dev/null -w '%{http_code}' ${args} 2>&1`)).trim();

  beforeAll(async () => {
    await dns.start();
    const caDir = join(scratch.root, 'ca');
    mkdirSync(caDir);
    const tls = makeTestCa(caDir, 'rules.test');
    wss = createHttpsServer({ key: readFileSync(tls.key), cert: readFileSync(tls.cert) }, record);
    wss.on('upgrade', upgrade);
    ruledHttp = createHttpServer(record);
    plainHttp = createHttpServer(record);
    port = await listen(wss);
    httpPort = await listen(ruledHttp);
    plainPort = await listen(plainHttp);
    scratch.writeConfig(
      ['network: allowlist', 'egress:', '  allow:', '    - plain.test', '    - 127.0.0.1/32', '    - rules.test: { methods: [GET], paths: [/ws/] }', ''].join(
        '\n',
      ),
    );
    moat = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}`, MOAT_GATEWAY_CA: tls.ca } });
    await moat.up({ task: 'ws' });
  });
  afterAll(async () => {
    wss?.close();
    ruledHttp?.close();
    plainHttp?.close();
    dns.stop();
    await scratch.cleanup();
  });

  it('a handshake on an allowed path is relayed with its Upgrade headers; after the 101 data flows both ways', async () => {
    const before = seen.length;
    const out = await websocket('GET', '/ws/chat');
    expect(out).toContain('HTTP/1.1 101 Switching Protocols');
    expect(out).toContain('Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    // Upstream to sandbox (its greeting), sandbox to upstream (the frame), and back (the echo).
    expect(out).toContain('welcome');
    expect(out).toContain('echo:hello');
    expect(seen.slice(before)).toEqual(['UPGRADE GET /ws/chat', 'FRAME hello']);
  });

  it('a handshake on a path or with a method the rules do not admit gets the 403 with the reason; nothing reaches the upstream', async () => {
    const before = seen.length;
    const path = await websocket('GET', '/other/chat');
    expect(path).toContain('HTTP/1.1 403 moat refused');
    expect(path).toContain('moat: egress denied (rule rules.test GET /ws/: path /other/chat not under an allowed prefix) for rules.test:');
    expect(path).not.toContain('welcome');
    const method = await websocket('POST', '/ws/chat');
    expect(method).toContain('HTTP/1.1 403 moat refused');
    expect(method).toContain('method POST not allowed');
    // A trick in the path is refused as for any request.
    expect(await websocket('GET', '/ws/../other')).toContain('path holds a dot segment');
    // Any other upgrade (h2c) on an admitted path: after it requests would flow unjudged.
    expect(await websocket('GET', '/ws/h2', 'h2c')).toContain('HTTP/1.1 400 moat refused: only WebSocket upgrades are relayed');
    expect(seen.slice(before)).toEqual([]);
  });

  it('plain HTTP through CONNECT to the host is judged request by request, as absolute-form HTTP is', async () => {
    const before = seen.length;
    expect(await tunnelled(`http://rules.test:${httpPort}/ws/plain`)).toBe('200');
    expect(await tunnelled(`-X DELETE http://rules.test:${httpPort}/ws/plain`)).toBe('403');
    expect(await tunnelled(`http://rules.test:${httpPort}/other`)).toBe('403');
    const out = await run(`curl -sS -m 10 -p -x "$HTTPS_PROXY" http://rules.test:${httpPort}/other 2>&1`);
    expect(out).toContain('moat: egress denied (rule rules.test GET /ws/: path /other not under an allowed prefix)');
    // A host without rules: the same request goes through instead of a tunnel that resets.
    expect(await tunnelled(`http://plain.test:${plainPort}/free`)).toBe('200');
    expect(seen.slice(before)).toEqual(['GET /ws/plain', 'GET /free']);
  });

  it('every handshake and tunnelled request is audited with its method and path', async () => {
    const audit = await eventually(
      () => moat.egress('ws'),
      (a) => a.some((r) => r.path === '/ws/chat' && r.decision === 'allowed') && a.some((r) => r.port === plainPort),
    );
    expect(audit.find((r) => r.path === '/ws/chat' && r.decision === 'allowed')).toMatchObject({
      method: 'GET',
      host: 'rules.test',
      status: 101,
      rule: 'rule rules.test GET /ws/',
    });
    expect(audit.find((r) => r.path === '/ws/chat' && r.decision === 'allowed')!.bytesUp).toBeGreaterThan(0);
    expect(audit.find((r) => r.path === '/other/chat')).toMatchObject({ method: 'GET', decision: 'denied' });
    expect(audit.find((r) => r.path === '/ws/chat' && r.method === 'POST')).toMatchObject({ decision: 'denied' });
    expect(audit.find((r) => r.port === httpPort && r.method === 'DELETE')).toMatchObject({ path: '/ws/plain', decision: 'denied' });
    expect(audit.find((r) => r.port === httpPort && r.path === '/ws/plain' && r.method === 'GET')).toMatchObject({ decision: 'allowed' });
    expect(audit.find((r) => r.port === plainPort)).toMatchObject({ method: 'GET', path: '/free', decision: 'allowed' });
  });
});
