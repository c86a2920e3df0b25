import { spawn, type ChildProcess, execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { DnsStub } from '../helpers/dns-stub.js';
import { hostInternalAddress } from '../helpers/registries.js';
import { captureIO, eventually, makeTestCa, Scratch, selfSigned } from '../helpers/fixtures.js';

/**
 * The gateway on networks as companies run them: an explicit upstream proxy (Debian's squid on
 * loopback), TLS inspection with the network's own CA (a small inspecting proxy of the test's),
 * an inspecting proxy in a range the gateway refuses by default (a private address of this host),
 * and refusals that an agent can read. Only loopback and this host's own addresses are used.
 */

const listen = (server: Server | TlsServer, host = '127.0.0.1') =>
  new Promise<number>((resolve) => server.listen(0, host, () => resolve((server.address() as AddressInfo).port)));

async function run(moat: Moat, task: string, script: string): Promise<string> {
  const cap = captureIO();
  await moat.exec(task, ['sh', '-c', script], cap.io, { sync: false });
  return cap.out() + cap.err();
}

/** Debian's squid in the foreground on a loopback port; names it resolves come from a hosts file of the test's. */
async function startSquid(hosts: Record<string, string>): Promise<{ port: number; log: () => string; stop: () => Promise<void> }> {
  // squid drops to its own user: it must reach, read and write its folder (a scratch root is the test's alone).
  const dir = mkdtempSync(join(tmpdir(), 'moat-squid-'));
  chmodSync(dir, 0o777);
  const port = await new Promise<number>((resolve) => {
    const probe = createHttpServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address() as AddressInfo;
      probe.close(() => resolve(free));
    });
  });
  writeFileSync(
    join(dir, 'hosts'),
    Object.entries(hosts)
      .map(([name, ip]) => `${ip} ${name}\n`)
      .join(''),
  );
  writeFileSync(
    join(dir, 'squid.conf'),
    [
      `http_port 127.0.0.1:${port}`,
      'acl test_clients src 127.0.0.1/32',
      'http_access allow test_clients',
      'http_access deny all',
      'cache deny all',
      'cache_mem 8 MB',
      'pinger_enable off',
      `access_log stdio:${join(dir, 'access.log')}`,
      `cache_log ${join(dir, 'cache.log')}`,
      `pid_filename ${join(dir, 'squid.pid')}`,
      `hosts_file ${join(dir, 'hosts')}`,
      'dns_nameservers 127.0.0.1',
      `coredump_dir ${dir}`,
      'shutdown_lifetime 0 seconds',
      '',
    ].join('\n'),
  );
  const squid: ChildProcess = spawn('/usr/sbin/squid', ['-N', '-f', join(dir, 'squid.conf')], { stdio: 'ignore' });
  const up = async () =>
    new Promise<boolean>((resolve) => {
      const socket = netConnect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
  for (let i = 0; i < 100 && !(await up()); i += 1) await new Promise((r) => setTimeout(r, 100));
  if (!(await up()))
    throw new Error(`squid did not start: ${existsSync(join(dir, 'cache.log')) ? readFileSync(join(dir, 'cache.log'), 'utf8').slice(-500) : 'no log'}`);
  return {
    port,
    log: () => (existsSync(join(dir, 'access.log')) ? readFileSync(join(dir, 'access.log'), 'utf8') : ''),
    stop: () =>
      new Promise<void>((resolve) => {
        const done = () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (squid.exitCode !== null) return done();
        squid.once('exit', done);
        squid.kill('SIGTERM');
        setTimeout(() => squid.kill('SIGKILL'), 3000).unref();
      }),
  };
}

describe("through the host's upstream proxy (Debian's squid)", () => {
  const scratch = new Scratch();
  // The gateway must not resolve anything here: the proxy does. The stub knows no name and records every query.
  const dns = new DnsStub({});
  const seen: string[] = [];
  let http: Server;
  let https: Server;
  let squid: Awaited<ReturnType<typeof startSquid>>;
  let moat: Moat;
  let httpPort = 0;
  let httpsPort = 0;
  const PASSWORD = 's3cret-proxy-pw';

  beforeAll(async () => {
    await dns.start();
    const handler = (req: { url?: string; headers: Record<string, unknown> }, res: { end: (body: string) => void }) => {
      seen.push(`${req.url} ${JSON.stringify(req.headers)}`);
      res.end(`upstream saw ${req.url}\n`);
    };
    http = createHttpServer(handler);
    https = createHttpsServer(selfSigned(scratch.root, 'allowed.test'), handler);
    httpPort = await listen(http);
    httpsPort = await listen(https);
    squid = await startSquid({ 'allowed.test': '127.0.0.1' });
    // No loopback rule: through a proxy the gateway does not resolve, so it has no address to judge.
    scratch.writeConfig('egress:\n  allow: [allowed.test]\n');
    const proxy = `http://moat:${PASSWORD}@127.0.0.1:${squid.port}`;
    moat = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}`, HTTPS_PROXY: proxy, HTTP_PROXY: proxy, NO_PROXY: '' } });
    await moat.up({ task: 'proxied', network: 'allowlist' });
  });
  afterAll(async () => {
    http?.close();
    https?.close();
    dns.stop();
    await squid?.stop();
    await scratch.cleanup();
  });

  it('allowed hosts go through the proxy (its access log shows them); the gateway looks nothing up', async () => {
    const out = await run(
      moat,
      'proxied',
      `curl -sS -m 10 -k https://allowed.test:${httpsPort}/tls 2>&1; curl -sS -m 10 http://allowed.test:${httpPort}/plain 2>&1`,
    );
    expect(out).toContain('upstream saw /tls');
    expect(out).toContain('upstream saw /plain');
    const log = (
      await eventually(
        async () => squid.log(),
        (text) => text.includes('/plain') && text.includes('CONNECT'),
      )
    ).toString();
    expect(log).toContain(`CONNECT allowed.test:${httpsPort}`);
    expect(log).toContain(`GET http://allowed.test:${httpPort}/plain`);
    expect(dns.queries).toEqual([]);
    const audit = await eventually(
      () => moat.egress('proxied'),
      (a) => a.filter((r) => r.decision === 'allowed').length >= 2,
    );
    expect(audit.filter((r) => r.decision === 'allowed').map((r) => r.rule)).toEqual([
      `allow allowed.test via proxy 127.0.0.1:${squid.port}`,
      `allow allowed.test via proxy 127.0.0.1:${squid.port}`,
    ]);
  });

  it('denied hosts never reach the proxy, and the sandbox hears why', async () => {
    const out = await run(moat, 'proxied', 'curl -sS -m 10 http://exfil.test/x 2>&1; curl -sS -m 10 -k https://exfil.test/y 2>&1; echo done');
    expect(out).toContain('moat: egress denied (not in allowlist: exfil.test) for exfil.test:80');
    expect(out).toContain('CONNECT tunnel failed, response 403');
    expect(squid.log()).not.toContain('exfil.test');
    expect(dns.queries).toEqual([]);
  });

  it("the proxy's credentials stay in the gateway: nothing in the sandbox holds them, the upstream never sees them", async () => {
    const out = await run(
      moat,
      'proxied',
      `env; cat /moat/egress/* 2>/dev/null; grep -rl ${PASSWORD} /proc/*/environ /home /tmp /moat 2>/dev/null; echo scanned`,
    );
    expect(out).toContain('scanned');
    expect(out).not.toContain(PASSWORD);
    expect(seen.join('\n')).not.toContain(Buffer.from(`moat:${PASSWORD}`).toString('base64'));
  });
});

describe('a network that inspects TLS with its own CA', () => {
  const scratch = new Scratch();
  const dns = new DnsStub({ 'inspected.test': '127.0.0.1' });
  let upstream: Server;
  let inspector: TlsServer;
  let inspectorPort = 0;
  let ca = '';
  let moat: Moat;

  beforeAll(async () => {
    await dns.start();
    // The real server has a certificate of its own; the inspector shows the client one from the network's CA.
    upstream = createHttpsServer(selfSigned(scratch.root, 'inspected.test'), (req, res) => res.end(`upstream saw ${req.url}\n`));
    const upstreamPort = await listen(upstream);
    const caDir = join(scratch.root, 'netca');
    mkdirSync(caDir);
    const made = makeTestCa(caDir, 'inspected.test');
    ca = made.ca;
    inspector = createTlsServer({ key: readFileSync(made.key), cert: readFileSync(made.cert) }, (client) => {
      const onward = tlsConnect({ host: '127.0.0.1', port: upstreamPort, servername: 'inspected.test', rejectUnauthorized: false });
      client.pipe(onward).pipe(client);
      client.on('error', () => onward.destroy());
      onward.on('error', () => client.destroy());
    });
    inspectorPort = await listen(inspector);
    // The host's own added CAs, where Debian keeps them (a folder of the test's, named by MOAT_HOST_CA_DIR).
    mkdirSync(join(scratch.root, 'host-cas', 'corp'), { recursive: true });
    copyFileSync(ca, join(scratch.root, 'host-cas', 'corp', 'network.crt'));
    moat = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}`, MOAT_HOST_CA_DIR: join(scratch.root, 'host-cas') } });
  });
  afterAll(async () => {
    upstream?.close();
    inspector?.close();
    dns.stop();
    await scratch.cleanup();
  });

  const fetchIt = (task: string) => run(moat, task, `curl -sS -m 10 https://inspected.test:${inspectorPort}/pkg 2>&1; echo "exit=$?"`);

  it("without trust the sandbox refuses the inspected connection with a clear message, and gets nothing of the host's CAs", async () => {
    scratch.writeConfig('egress:\n  allow: [inspected.test, 127.0.0.1/32]\n');
    await moat.up({ task: 'untrusting', network: 'allowlist' });
    const out = await fetchIt('untrusting');
    expect(out).toMatch(/SSL certificate problem: (unable to get local issuer certificate|self-signed certificate in certificate chain)/);
    expect(out).not.toContain('upstream saw');
    const env = await run(moat, 'untrusting', 'env | grep -E "SSL_CERT_FILE|NODE_EXTRA_CA_CERTS" ; ls /moat/egress');
    expect(env).not.toContain('SSL_CERT_FILE');
    expect(env).not.toContain('bundle.pem');
  });

  it('with egress.trustCa the sandbox trusts that CA (system bundle plus it) and the request succeeds', async () => {
    scratch.writeConfig(`egress:\n  allow: [inspected.test, 127.0.0.1/32]\n  trustCa: [${ca}]\n`);
    await moat.up({ task: 'trusting', network: 'allowlist' });
    expect(await fetchIt('trusting')).toContain('upstream saw /pkg');
    const env = await run(
      moat,
      'trusting',
      'echo "$SSL_CERT_FILE $NODE_EXTRA_CA_CERTS $REQUESTS_CA_BUNDLE $GIT_SSL_CAINFO"; awk \'$2 == "/moat/egress" { split($4, o, ","); print o[1] }\' /proc/mounts',
    );
    expect(env.split('\n')).toEqual(['/moat/egress/bundle.pem /moat/egress/ca.pem /moat/egress/bundle.pem /moat/egress/bundle.pem', 'ro', '']);
  });

  it("with egress.trustHostCa the host's added CAs are trusted the same way", async () => {
    scratch.writeConfig('egress:\n  allow: [inspected.test, 127.0.0.1/32]\n  trustHostCa: true\n');
    await moat.up({ task: 'hostca', network: 'allowlist' });
    expect(await fetchIt('hostca')).toContain('upstream saw /pkg');
  });

  it('a repository cannot ask for either', async () => {
    scratch.writeConfig('egress:\n  allow: [inspected.test, 127.0.0.1/32]\n');
    writeFileSync(join(scratch.repo, 'moat.yaml'), 'egress:\n  trustHostCa: true\n');
    await expect(moat.up({ task: 'repo-asks', network: 'allowlist' })).rejects.toMatchObject({
      code: 'E_CONFIG_WIDENS',
      message: expect.stringContaining('egress.trustHostCa'),
    });
    execFileSync('rm', [join(scratch.repo, 'moat.yaml')]);
  });
});

/** A non-public, non-loopback IPv4 address of this host (private, documentation…), where a test server can listen. */
describe('an inspecting proxy in a range the gateway refuses, and what doctor suggests', () => {
  const scratch = new Scratch();
  const { address, kind } = hostInternalAddress();
  const range = `${address.split('.').slice(0, 3).join('.')}.0/24`;
  const dns = new DnsStub({ 'registry.corp.test': address, 'registry.npmjs.org': '203.0.113.80' });
  let server: Server;
  let port = 0;
  let moat: Moat;

  beforeAll(async () => {
    await dns.start();
    server = createHttpServer((req, res) => res.end(`proxy saw ${req.url}\n`));
    port = await listen(server, address);
    mkdirSync(join(scratch.root, 'host-cas'));
    mkdirSync(join(scratch.root, 'ca'));
    writeFileSync(join(scratch.root, 'host-cas', 'net.crt'), readFileSync(makeTestCa(join(scratch.root, 'ca'), 'x.test').ca));
    moat = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}`, MOAT_HOST_CA_DIR: join(scratch.root, 'host-cas') } });
  });
  afterAll(async () => {
    server?.close();
    dns.stop();
    await scratch.cleanup();
  });

  it('refused before any tunnel opens: a 403 that names the address, never "200" then a reset', async () => {
    scratch.writeConfig('egress:\n  allow: [registry.corp.test]\n');
    await moat.up({ task: 'corp', network: 'allowlist' });
    const out = await run(
      moat,
      'corp',
      `curl -sS -m 10 http://registry.corp.test:${port}/a 2>&1; curl -sv -m 10 -k https://registry.corp.test:${port}/b 2>&1; echo done`,
    );
    expect(out).toContain(`moat: egress denied (${kind} address ${address} refused) for registry.corp.test:${port}`);
    expect(out).toContain(`< HTTP/1.1 403 moat refused: ${kind} address ${address} refused`);
    expect(out).toContain('< Proxy-Status: moat; error=destination_ip_prohibited');
    expect(out).not.toContain('200 Connection established');
    expect(out).not.toContain('proxy saw');
  });

  it('doctor detects the situation and names the exact user-config keys; with them, the allowed name works', async () => {
    scratch.writeConfig('egress:\n  allow: [registry.corp.test]\n');
    const before = await moat.doctor();
    const trust = before.checks.find((c) => c.name === 'egress trust')!;
    const addresses = before.checks.find((c) => c.name === 'egress addresses')!;
    expect(trust).toMatchObject({ status: 'warn', fix: expect.stringContaining('egress: { trustHostCa: true }') });
    expect(addresses).toMatchObject({ status: 'warn', fix: expect.stringContaining('egress: { allowAddresses: [203.0.113.0/24] }') });
    expect(addresses.detail).toContain('registry.npmjs.org → 203.0.113.80 (documentation)');

    scratch.writeConfig(`egress:\n  allow: [registry.corp.test]\n  trustHostCa: true\n  allowAddresses: [203.0.113.0/24, ${range}]\n`);
    const after = await moat.doctor();
    expect(after.checks.filter((c) => c.name.startsWith('egress')).map((c) => c.status)).toEqual(['ok', 'ok']);
    // The running task picks the user's settings up with its next policy change.
    await moat.changeEgress('corp', { allow: ['registry.corp.test'] });
    const logged = (await moat.egress('corp')).length;
    expect(await run(moat, 'corp', `curl -sS -m 10 http://registry.corp.test:${port}/ok 2>&1`)).toContain('proxy saw /ok');
    // An allowed connection is logged when it closes, a moment after the client is done.
    const audited = await eventually(
      () => moat.egress('corp'),
      (a) => a.length > logged,
    );
    expect(audited.at(-1)).toMatchObject({ decision: 'allowed', address });
    // An address in the range is still no target by itself.
    expect(await run(moat, 'corp', `curl -sS -m 10 http://${address}:${port}/direct 2>&1`)).toContain(`egress denied (not in allowlist: ${address})`);
  });
});

describe('refusals an agent can read', () => {
  const scratch = new Scratch();
  const dns = new DnsStub({ 'meta.test': '169.254.169.254' });
  let moat: Moat;

  beforeAll(async () => {
    await dns.start();
    scratch.writeConfig('egress:\n  allow: [meta.test]\n');
    moat = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}` } });
    await moat.up({ task: 'agent', network: 'allowlist', template: 'codex' });
  });
  afterAll(async () => {
    dns.stop();
    await scratch.cleanup();
  });

  it('moat-why, before any refusal, says there is none; it is on the PATH, read-only', async () => {
    const out = await run(
      moat,
      'agent',
      'command -v moat-why; moat-why; echo "exit $?"; (echo x >> "$(command -v moat-why)") 2>/dev/null || echo write-refused',
    );
    expect(out.split('\n')).toEqual([
      '/moat/egress/bin/moat-why',
      'moat-why: no egress denials recorded for this task: moat has refused none of its connections.',
      'exit 0',
      'write-refused',
      '',
    ]);
  });

  it('curl: the body over HTTP, the status line and Proxy-Status over HTTPS name moat and the reason', async () => {
    const out = await run(
      moat,
      'agent',
      'curl -sS -m 10 http://exfil.test/ 2>&1; curl -sS -v -m 10 https://exfil.test/ 2>&1; curl -sS -v -m 10 https://meta.test/ 2>&1; echo done',
    );
    expect(out).toContain(
      'moat: egress denied (not in allowlist: exfil.test) for exfil.test:80. If the task needs it, ask the user to run: moat allow agent exfil.test. Recent denials: moat-why',
    );
    expect(out).toContain('< HTTP/1.1 403 moat refused: not in allowlist: exfil.test');
    expect(out).toContain('< Proxy-Status: moat; error=http_request_denied; details="not in allowlist: exfil.test"');
    expect(out).toContain('< HTTP/1.1 403 moat refused: metadata address 169.254.169.254 refused');
    expect(out).not.toContain('200 Connection established');
  });

  it("Node's fetch reaches the gateway through the proxy variables and prints moat's sentence", async () => {
    const script = [
      "fetch('http://exfil.test/data').then(async (r) => console.log(r.status, await r.text()))",
      ".then(() => fetch('https://exfil.test/data')).catch((e) => console.log('https:', e.cause?.message ?? e.message))",
    ].join('');
    const out = await run(moat, 'agent', `node -e "${script}" 2>&1`);
    expect(out).toContain('403 moat: egress denied (not in allowlist: exfil.test) for exfil.test:80');
    // Over HTTPS, Node reports only that the tunnel failed; the denials file has the reason (below).
    expect(out).toMatch(/https: \S/);
  });

  it('the denials file lists them with reasons and the next step; the sandbox cannot write it', async () => {
    const out = await run(moat, 'agent', 'cat /moat/egress/denials; (echo forged >> /moat/egress/denials) 2>/dev/null || echo write-refused');
    expect(out.trim().split('\n').at(-1)).toBe('write-refused');
    expect(out).toMatch(
      /^\S+Z GET \/ moat: egress denied \(not in allowlist: exfil\.test\) for exfil\.test:80\. If the task needs it, ask the user to run: moat allow agent exfil\.test\.$/m,
    );
    expect(out).toMatch(/CONNECT moat: egress denied \(metadata address 169\.254\.169\.254 refused\) for meta\.test:443/);
    expect(out).not.toContain('forged');
  });

  it('moat-why prints those refusals with their reasons, and how to ask a human for a host', async () => {
    const out = await run(moat, 'agent', 'curl -sS -m 10 https://denied.test/ 2>&1; moat-why; echo "exit $?"');
    expect(out).toContain('CONNECT tunnel failed, response 403');
    const lines = out.trim().split('\n');
    expect(lines).toContain("moat-why: this task's recent egress denials, oldest first (time, request, reason, what a human can do):");
    expect(lines.at(-3)).toMatch(
      /^\S+Z CONNECT moat: egress denied \(not in allowlist: denied\.test\) for denied\.test:443\. If the task needs it, ask the user to run: moat allow agent denied\.test\.$/,
    );
    expect(lines.at(-2)).toBe(
      'moat-why: to get a host allowed, tell the user which host and why the work needs it; only they can allow it, on their machine: moat allow agent HOST',
    );
    expect(lines.at(-1)).toBe('exit 0');
    expect(out).toMatch(/ moat: egress denied \(metadata address 169\.254\.169\.254 refused\) for meta\.test:443/);
  });

  it("the agent's instructions say where refusals are explained and how to ask for a host", async () => {
    const out = await run(moat, 'agent', 'cat ~/.codex/AGENTS.md');
    expect(out).toContain('run `moat-why`');
    expect(out).toContain('moat allow');
  });
});
