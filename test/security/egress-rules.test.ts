import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { DnsStub } from '../helpers/dns-stub.js';
import { captureIO, eventually, makeTestCa, Scratch, selfSigned } from '../helpers/fixtures.js';

/**
 * Method and path rules, in a real sandbox: HTTPS to a host with rules is inspected with the
 * task's own CA and every request judged (kept-alive, pipelined, HTTP/2 offered, tricks in the
 * path, bodies over the cap); a host without rules stays a blind tunnel. Upstreams are loopback
 * servers of the test's that record every request they get.
 */
describe('method and path rules', () => {
  const scratch = new Scratch();
  const dns = new DnsStub({ 'rules.test': '127.0.0.1', 'plain.test': '127.0.0.1' });
  const seen: string[] = [];
  let ruled: Server;
  let ruledHttp: Server;
  let plain: Server;
  let moat: Moat;
  let port = 0;
  let httpPort = 0;
  let plainPort = 0;

  const record = (req: IncomingMessage, res: ServerResponse) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => (size += chunk.length));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${size}`);
      res.end(`upstream saw ${req.method} ${req.url}\n`);
    });
  };
  const listen = (server: Server) => new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

  async function run(script: string): Promise<string> {
    const cap = captureIO();
    await moat.exec('rules', ['sh', '-c', script], cap.io, { sync: false });
    return cap.out() + cap.err();
  }
  /** Status code of one curl inside the sandbox (no -k: the task's CA must verify). */
  const status = async (args: string) => (await run(`curl -sS -m 10 -o /dev/null -w '%{http_code}' ${args} 2>&1`)).trim();

  beforeAll(async () => {
    await dns.start();
    const caDir = join(scratch.root, 'ca');
    mkdirSync(caDir);
    const tls = makeTestCa(caDir, 'rules.test');
    ruled = createHttpsServer({ key: readFileSync(tls.key), cert: readFileSync(tls.cert) }, record);
    ruledHttp = createHttpServer(record);
    plain = createHttpsServer(selfSigned(caDir, 'plain.test'), record);
    port = await listen(ruled);
    httpPort = await listen(ruledHttp);
    plainPort = await listen(plain);
    scratch.writeConfig(
      [
        'network: allowlist',
        'egress:',
        '  allow:',
        '    - plain.test',
        '    - 127.0.0.1/32',
        '    - rules.test: { methods: [GET, HEAD], paths: [/repos/acme/] }',
        '    - rules.test: { methods: [POST], paths: [/upload/], maxBody: 1k }',
        '',
      ].join('\n'),
    );
    moat = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}`, MOAT_GATEWAY_CA: tls.ca } });
    await moat.up({ task: 'rules' });
  });
  afterAll(async () => {
    ruled?.close();
    ruledHttp?.close();
    plain?.close();
    dns.stop();
    await scratch.cleanup();
  });

  it('GET is allowed, PUT and POST to the same path refused with a reason the agent reads; the upstream sees only the GET', async () => {
    const before = seen.length;
    expect(await status(`https://rules.test:${port}/repos/acme/widget`)).toBe('200');
    // POST is allowed under /upload/ only.
    expect(await status(`--data x https://rules.test:${port}/repos/acme/widget`)).toBe('403');
    const out = await run(`curl -sS -m 10 -i -X PUT --data x https://rules.test:${port}/repos/acme/widget 2>&1`);
    expect(out).toContain('moat: egress denied (rule rules.test GET,HEAD /repos/acme/: method PUT not allowed) for rules.test:');
    expect(out).toContain('only the user can change them');
    expect(out).toMatch(/proxy-status: moat; error=http_request_denied/i);
    expect(seen.slice(before)).toEqual(['GET /repos/acme/widget 0']);
  });

  it('paths outside the prefix are refused, and so is every spelling that could reach outside it', async () => {
    const before = seen.length;
    for (const path of [
      '/repos/other/x',
      '/repos/acme-evil/x',
      '/repos/acme/../other/x',
      '/repos/acme/%2e%2e/other',
      '/repos/acme%2F..%2Fother',
      '/repos//acme/x',
      '/REPOS/acme/x',
      '/repos/acme;p=1/x',
      '/repos/acme/%252e%252e/x',
    ]) {
      expect(await status(`--path-as-is 'https://rules.test:${port}${path}'`), path).toBe('403');
    }
    // An absolute-form request line inside the inspected connection.
    expect(await status(`--request-target 'https://rules.test:${port}/repos/acme/x' https://rules.test:${port}/`)).toBe('400');
    expect(seen.slice(before)).toEqual([]);
    const denials = await run('cat /moat/egress/denials');
    expect(denials).toContain('GET /repos/acme/%2e%2e/other moat: egress denied (rule rules.test GET,HEAD /repos/acme/: path holds a dot segment)');
  });

  it('a body over the cap is refused: declared (nothing leaves) and chunked (cut before the cap)', async () => {
    await run('head -c 800 /dev/zero > /tmp/small; head -c 4000 /dev/zero > /tmp/big');
    const before = seen.length;
    expect(await status(`--data-binary @/tmp/small https://rules.test:${port}/upload/a`)).toBe('200');
    expect(await status(`--data-binary @/tmp/big https://rules.test:${port}/upload/b`)).toBe('413');
    expect(await status(`-H 'Transfer-Encoding: chunked' --data-binary @/tmp/big https://rules.test:${port}/upload/c`)).toBe('413');
    expect(await status(`-H 'Transfer-Encoding: chunked' --data-binary @/tmp/small https://rules.test:${port}/upload/d`)).toBe('200');
    // The chunked one over the cap never completed upstream.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(seen.slice(before)).toEqual(['POST /upload/a 800', 'POST /upload/d 800']);
  });

  it('each request on a kept-alive or pipelined connection is judged on its own; HTTP/2 is not negotiated', async () => {
    const before = seen.length;
    const both = await run(
      `curl -sS -m 10 -w ' %{http_code} %{num_connects}\\n' https://rules.test:${port}/repos/acme/one https://rules.test:${port}/repos/other/two 2>&1`,
    );
    expect(both).toMatch(/upstream saw GET \/repos\/acme\/one\n 200 1/);
    expect(both).toMatch(/ 403 0/);
    // Three requests in one write on one TLS connection (through the gateway's proxy port).
    const pipelined = await run(
      `proxy=\${HTTPS_PROXY#http://}; printf 'GET /repos/acme/p1 HTTP/1.1\\r\\nHost: rules.test:${port}\\r\\n\\r\\nDELETE /repos/acme/p2 HTTP/1.1\\r\\nHost: rules.test:${port}\\r\\n\\r\\nGET /secret/p3 HTTP/1.1\\r\\nHost: rules.test:${port}\\r\\n\\r\\n' | timeout 10 openssl s_client -quiet -proxy "\${proxy%/}" -connect rules.test:${port} -servername rules.test -CAfile "$SSL_CERT_FILE" -ign_eof 2>/dev/null`,
    );
    expect(pipelined).toContain('upstream saw GET /repos/acme/p1');
    expect(pipelined).toContain('method DELETE not allowed');
    expect(seen.slice(before)).toEqual(['GET /repos/acme/one 0', 'GET /repos/acme/p1 0']);
    expect((await run(`curl -sS -m 10 --http2 -o /dev/null -w '%{http_version}' https://rules.test:${port}/repos/acme/h2`)).trim()).toBe('1.1');
  });

  it('plain HTTP to the host is judged the same way', async () => {
    expect(await status(`http://rules.test:${httpPort}/repos/acme/x`)).toBe('200');
    expect(await status(`-X DELETE http://rules.test:${httpPort}/repos/acme/x`)).toBe('403');
    expect(await status(`--path-as-is http://rules.test:${httpPort}/repos/acme/../other`)).toBe('403');
    expect(await status(`http://rules.test:${httpPort}/other`)).toBe('403');
  });

  it('every request is audited with its method and path, the query redacted', async () => {
    await status(`'https://rules.test:${port}/repos/acme/q?token=hunter2'`);
    const audit = await eventually(
      () => moat.egress('rules'),
      (a) => a.some((r) => r.path?.startsWith('/repos/acme/q')),
    );
    expect(audit.find((r) => r.path?.startsWith('/repos/acme/q'))).toMatchObject({
      method: 'GET',
      host: 'rules.test',
      path: '/repos/acme/q?[redacted]',
      decision: 'allowed',
      rule: 'rule rules.test GET,HEAD /repos/acme/',
    });
    expect(audit.find((r) => r.method === 'PUT')).toMatchObject({ path: '/repos/acme/widget', decision: 'denied' });
    expect(audit.find((r) => r.path === '/upload/b')).toMatchObject({
      method: 'POST',
      decision: 'denied',
      rule: expect.stringContaining('over the cap of 1024'),
    });
    expect(audit.find((r) => r.port === httpPort && r.method === 'DELETE')).toMatchObject({ path: '/repos/acme/x', decision: 'denied' });
    expect(JSON.stringify(audit)).not.toContain('hunter2');
  });

  it("a host without rules stays a tunnel: the sandbox sees the origin's own certificate, not the task's CA", async () => {
    const out = await run(`curl -sS -m 10 -vk https://plain.test:${plainPort}/x 2>&1`);
    expect(out).toContain('upstream saw GET /x');
    expect(out).toMatch(/issuer: CN=plain\.test/);
    expect(out).not.toContain('moat task');
    const ruledOut = await run(`curl -sS -m 10 -v https://rules.test:${port}/repos/acme/cert 2>&1`);
    expect(ruledOut).toMatch(/issuer: CN=moat task rules/);
  });

  it("a repository's moat.yaml narrows the user's rules (no approval needed) and cannot widen them", async () => {
    // The repository lists DELETE (the user's rules do not) and a narrower path.
    writeFileSync(join(scratch.repo, 'moat.yaml'), 'egress:\n  allow:\n    - rules.test: { methods: [GET, DELETE], paths: [/repos/acme/widget/] }\n');
    try {
      await moat.up({ task: 'narrow' });
    } finally {
      rmSync(join(scratch.repo, 'moat.yaml'));
    }
    const inNarrow = async (args: string) => {
      const cap = captureIO();
      await moat.exec('narrow', ['sh', '-c', `curl -sS -m 10 -o /dev/null -w '%{http_code}' ${args} 2>&1`], cap.io, { sync: false });
      return cap.out().trim();
    };
    expect(await inNarrow(`https://rules.test:${port}/repos/acme/widget/x`)).toBe('200');
    expect(await inNarrow(`https://rules.test:${port}/repos/acme/other`)).toBe('403');
    expect(await inNarrow(`-X DELETE https://rules.test:${port}/repos/acme/widget/x`)).toBe('403');
  });
});
