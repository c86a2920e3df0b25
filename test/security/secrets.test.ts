import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat, TaskRecord } from '../../src/index.js';
import { DnsStub } from '../helpers/dns-stub.js';
import { captureIO, eventually, inspect, makeTestCa, Scratch } from '../helpers/fixtures.js';

const REAL = 'sk-real-9f8e7d6c5b4a-never-inside';
const SECOND = 'second-real-3e2d1c-never-inside';

/**
 * Bound secrets: the sandbox holds a placeholder; the gateway writes the real value into the
 * declared header on the way to the bound host only. Upstreams are local servers that record
 * what they receive; the gateway trusts a CA made for this test.
 */
describe('bound secrets never enter the sandbox', () => {
  const scratch = new Scratch();
  const dns = new DnsStub({ 'api.test': '127.0.0.1', 'echo.test': '127.0.0.1' });
  const received: Array<{ url: string; headers: IncomingHttpHeaders; body: string }> = [];
  let api: Server;
  let echo: Server;
  let moat: Moat;
  let record: TaskRecord;

  const record_ = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      received.push({ url: req.url ?? '', headers: req.headers, body });
      res.end(`echo ${body}\n`);
    });
  };
  const listen = (server: Server) =>
    new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));

  beforeAll(async () => {
    await dns.start();
    const d = scratch.root;
    const tls = makeTestCa(d, 'api.test');
    api = createHttpsServer({ key: readFileSync(tls.key), cert: readFileSync(tls.cert) }, record_);
    echo = createHttpServer(record_);
    const apiPort = await listen(api);
    const echoPort = await listen(echo);
    scratch.writeConfig(
      [
        'network: allowlist',
        'egress:',
        `  allow: [echo.test, 127.0.0.1/32]`,
        'secrets:',
        '  API_KEY:',
        '    from: { env: TEST_REAL_KEY }',
        `    hosts: ["api.test:${apiPort}"]`,
        '    route: api',
        '  SECOND_KEY:',
        '    from: { env: TEST_SECOND_KEY }',
        `    hosts: ["api.test:${apiPort}"]`,
        '    header: x-api-key',
        '    intercept: true',
        '',
      ].join('\n'),
    );
    moat = scratch.moat({ env: { TEST_SECOND_KEY: SECOND, TEST_REAL_KEY: REAL, MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}`, MOAT_GATEWAY_CA: tls.ca } });
    record = await moat.up({ task: 'keys' });
    (globalThis as { echoPort?: number }).echoPort = echoPort;
    (globalThis as { apiPort?: number }).apiPort = apiPort;
  });
  afterAll(async () => {
    api.close();
    echo.close();
    dns.stop();
    await scratch.cleanup();
  });

  async function inside(script: string): Promise<string> {
    const cap = captureIO();
    await moat.exec('keys', ['sh', '-c', script], cap.io, { sync: false });
    return cap.out() + cap.err();
  }

  it('the agent sees a placeholder; no process, file or the container config holds the value', async () => {
    // Every process's environment and command line, and every readable file but the kernel's.
    const out = await inside(
      'echo "$API_KEY"; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" "\\n" | grep -c "sk-rea[l]"; grep -rsI --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev "sk-rea[l]" / 2>/dev/null | head -1; echo scanned',
    );
    const lines = out.trim().split('\n');
    expect(lines[0]).toMatch(/^moat-placeholder-api-key-[0-9a-f]{12}$/);
    expect(lines[1]).toBe('0');
    expect(lines[2]).toBe('scanned');
    expect(JSON.stringify((await inspect(record.containerId!)).Config)).not.toContain(REAL);
  });

  it('the bound host gets the real value in the declared header, through the plain-HTTP route', async () => {
    const out = await inside('curl -sS -m 10 http://moat.gateway/api/v1/models');
    expect(out).toContain('echo');
    expect(out).not.toContain(REAL.slice(0, 12));
    const last = received.at(-1)!;
    expect(last.url).toBe('/v1/models');
    expect(last.headers.authorization).toBe(`Bearer ${REAL}`);
  });

  it("the route also works through a tunnel (Node's fetch tunnels plain HTTP), for a path on moat.gateway only", async () => {
    const out = await inside(
      'curl -sS -m 10 --proxytunnel http://moat.gateway/api/v1/tunnelled; curl -sS -m 10 --proxytunnel -H "Host: echo.test" -o /dev/null -w "%{http_code}\\n" http://moat.gateway/api/v1/elsewhere',
    );
    expect(out).toContain('echo');
    const last = received.at(-1)!;
    expect(last.url).toBe('/v1/tunnelled');
    expect(last.headers.authorization).toBe(`Bearer ${REAL}`);
    expect(out.trim().split('\n').at(-1)).toBe('400');
    expect(received.some((r) => r.url.includes('elsewhere'))).toBe(false);
  });

  it('a placeholder the agent sends is overwritten only in the header, never in the body', async () => {
    await inside('curl -sS -m 10 -H "Authorization: Bearer $API_KEY" --data "key=$API_KEY" http://moat.gateway/api/v1/echo');
    const last = received.at(-1)!;
    expect(last.headers.authorization).toBe(`Bearer ${REAL}`);
    expect(last.body).toMatch(/^key=moat-placeholder-api-key-/);
  });

  it('unbound hosts get no secret, even when the agent sends the placeholder there', async () => {
    const port = (globalThis as { echoPort?: number }).echoPort!;
    const out = await inside(`curl -sS -m 10 -H "Authorization: Bearer $API_KEY" --data "x=$API_KEY" http://echo.test:${port}/leak`);
    expect(out).not.toContain(REAL);
    const last = received.at(-1)!;
    expect(last.url).toBe('/leak');
    expect(JSON.stringify(last)).not.toContain(REAL);
  });

  it('neither the audit log, the task record, moat ls nor the gateway log contains the value', async () => {
    const taskDir = join(scratch.home, 'repos', record.repoKey, 'tasks', 'keys');
    const files = [
      join(taskDir, 'task.json'),
      join(taskDir, 'egress', 'audit.jsonl'),
      join(taskDir, 'egress', 'policy.json'),
      join(scratch.home, 'gateway', 'gateway.log'),
    ];
    for (const file of files) {
      expect(readFileSync(file, 'utf8'), file).not.toContain(REAL);
      expect(readFileSync(file, 'utf8'), file).not.toContain(SECOND);
    }
    expect(JSON.stringify(await moat.ls())).not.toContain(REAL);
    expect(JSON.stringify(await moat.egress('keys'))).not.toContain(REAL);
    expect(
      (
        await eventually(
          () => moat.egress('keys'),
          (a) => a.some((x) => x.rule === 'route api with API_KEY'),
        )
      ).some((a) => a.rule === 'route api with API_KEY'),
    ).toBe(true);
    expect(readdirSync(taskDir)).not.toContain('secrets');
  });

  it('interception (opt-in, bound hosts only): the task CA is trusted inside, the header is set by the gateway', async () => {
    const port = (globalThis as { apiPort?: number }).apiPort!;
    // No -k: curl verifies the gateway's leaf against the bundle that holds the task's own CA.
    const out = await inside(`curl -sS -m 10 -H "x-api-key: $SECOND_KEY" --data "k=$SECOND_KEY" https://api.test:${port}/intercepted`);
    expect(out).toContain('echo k=moat-placeholder-second-key-');
    const last = received.at(-1)!;
    expect(last.url).toBe('/intercepted');
    expect(last.headers['x-api-key']).toBe(SECOND);
    expect(last.body).toMatch(/^k=moat-placeholder-second-key-/);
    const audit = await eventually(
      () => moat.egress('keys'),
      (a) => a.at(-1)?.rule === 'intercept api.test with SECOND_KEY',
    );
    expect(audit.at(-1)).toMatchObject({ method: 'POST', host: 'api.test', rule: 'intercept api.test with SECOND_KEY', decision: 'allowed' });
    const scan = await inside(
      'grep -rs "second-rea[l]" /moat /home /tmp /workspace 2>/dev/null | head -1; cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n" | grep -c "second-rea[l]"',
    );
    expect(scan.trim()).toBe('0');
  });

  it('the CLI redacts every value it read from what it prints, errors included', async () => {
    const { createOutput, reportError } = await import('../../src/cli/output.js');
    const { PassThrough } = await import('node:stream');
    const { MoatError } = await import('../../src/errors.js');
    const sink = new PassThrough();
    let printed = '';
    sink.on('data', (c: Buffer) => (printed += c));
    const out = createOutput(true, () => [REAL], sink, sink);
    out.result({ leaked: `x${REAL}y` }, () => '');
    out.note(`a note with ${REAL}`);
    reportError(new MoatError('E_INTERNAL', `boom ${REAL}`, { hint: `hint ${REAL}` }), true, [REAL], sink, sink);
    expect(printed).toContain('[redacted]');
    expect(printed).not.toContain(REAL);
  });

  it('after a gateway restart the value is read again from its recorded source, not from config', async () => {
    const config = readFileSync(scratch.config, 'utf8');
    try {
      // The gateway loses its in-memory values; the binding is gone from the config (as for a key a
      // template bound from the environment): the next command still hands the value over.
      process.kill(Number(readFileSync(join(scratch.home, 'gateway', 'pid'), 'utf8')), 'SIGKILL');
      writeFileSync(scratch.config, config.slice(0, config.indexOf('secrets:')));
      await inside('curl -sS -m 10 http://moat.gateway/api/v1/after-restart');
      const last = received.at(-1)!;
      expect(last.url).toBe('/v1/after-restart');
      expect(last.headers.authorization).toBe(`Bearer ${REAL}`);
    } finally {
      writeFileSync(scratch.config, config);
    }
  });

  it('a missing secret is a clear error and creates nothing', async () => {
    const bare = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}` } });
    await expect(bare.up({ task: 'nokey' })).rejects.toMatchObject({ code: 'E_CONFIG_INVALID', message: expect.stringContaining('TEST_REAL_KEY is not set') });
    expect((await bare.ls()).map((t) => t.name)).toEqual(['keys']);
  });
});
