import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsStub } from '../helpers/dns-stub.js';
import { makeTestCa, MOAT_BIN, Scratch } from '../helpers/fixtures.js';

/**
 * `moat agent` names why the agent's model API let it down, whatever the agent printed: the
 * gateway records the status of each answer on a route (and whether it arrived whole), and the
 * agent command adds one line when the agent failed right after such an answer. The "agent" here
 * is curl through the route, so each case depends on the gateway alone.
 */
describe('moat agent: a failing model API is named in one line', () => {
  const scratch = new Scratch();
  const dns = new DnsStub({ 'api.test': '127.0.0.1' });
  let upstream: Server;
  const seenKeys: string[] = [];

  beforeAll(async () => {
    await dns.start();
    const tls = makeTestCa(scratch.root, 'api.test');
    upstream = createServer({ key: readFileSync(tls.key), cert: readFileSync(tls.cert) }, (req, res) => {
      seenKeys.push(String(req.headers.authorization));
      const what = req.url!.split('/').pop()!;
      if (what === 'refused') return res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid api key"}');
      if (what === 'limited') return res.writeHead(429, { 'retry-after': '30' }).end('slow down');
      if (what === 'broken') return res.writeHead(503).end('overloaded');
      if (what === 'cut') {
        // A stream the provider drops halfway: chunked, one event, then the connection ends.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"partial":true}\n\n');
        setTimeout(() => res.socket?.destroy(), 100);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const templates = join(scratch.root, 'templates');
    mkdirSync(join(templates, 'curlagent'), { recursive: true });
    // The prompt names the answer to ask for; "…-then-fail" fails after a good answer.
    writeFileSync(
      join(templates, 'curlagent', 'template.yaml'),
      [
        'description: curl as an agent',
        'build: _toolchains',
        'toolchains: []',
        'agent: [sh, -c, \'curl -sSf -m 20 "http://moat.gateway/fake/v1/${0%-then-fail}"; s=$?; case $0 in *-then-fail) exit 3;; esac; exit $s\', "{prompt}"]',
        '',
      ].join('\n'),
    );
    scratch.writeConfig(
      [
        `templates: [${templates}]`,
        'secrets:',
        '  FAKE_KEY:',
        '    from: { env: FAKE_REAL_KEY }',
        `    hosts: ["api.test:${(upstream.address() as AddressInfo).port}"]`,
        '    header: Authorization',
        '    route: fake',
        'egress:',
        '  allow: [127.0.0.1/32]',
        '',
      ].join('\n'),
    );
  });

  afterAll(async () => {
    upstream?.close();
    dns.stop();
    await scratch.cleanup();
  });

  const agent = (prompt: string) =>
    new Promise<{ code: number; err: string }>((resolve, reject) => {
      const env = scratch.env({
        FAKE_REAL_KEY: 'sk-real-upstream-key',
        MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}`,
        MOAT_GATEWAY_CA: join(scratch.root, 'ca.pem'),
      });
      const child = spawn(process.execPath, [MOAT_BIN, 'agent', '-t', 'curlagent', '--task', 'calls', prompt], {
        cwd: scratch.repo,
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, err }));
    });
  const failureLines = (err: string) => err.split('\n').filter((line) => line.includes('agent failed:'));

  it('a refused key, a rate limit, a provider failure: one line each, naming host, route and status', async () => {
    const refused = await agent('refused');
    expect(refused.code).toBe(22);
    expect(failureLines(refused.err)).toEqual([expect.stringMatching(/the model API at api\.test \(route fake\) refused the key: 401 \(hint: .*key.*\)$/)]);
    const limited = await agent('limited');
    expect(failureLines(limited.err)).toEqual([expect.stringMatching(/api\.test \(route fake\) is rate-limiting this key: 429/)]);
    const broken = await agent('broken');
    expect(failureLines(broken.err)).toEqual([expect.stringMatching(/api\.test \(route fake\) failed on its side: 503/)]);
    // The key went upstream in the header all along: the 401 was the provider's own answer.
    expect(seenKeys.every((key) => key === 'Bearer sk-real-upstream-key')).toBe(true);
  });

  it('a stream the provider cuts short is named as such', async () => {
    const cut = await agent('cut');
    expect(cut.code).toBe(18);
    expect(failureLines(cut.err)).toEqual([expect.stringMatching(/api\.test \(route fake\) cut its answer short: the connection ended mid-response/)]);
  });

  it('no line when the agent succeeded, nor when it failed after a good answer', async () => {
    const ok = await agent('ok');
    expect(ok.code).toBe(0);
    expect(failureLines(ok.err)).toEqual([]);
    const later = await agent('ok-then-fail');
    expect(later.code).toBe(3);
    expect(failureLines(later.err)).toEqual([]);
  });
});
