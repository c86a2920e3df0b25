import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { IncomingHttpHeaders, Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat, TaskRecord } from '../../src/index.js';
import { DnsStub } from '../helpers/dns-stub.js';
import { captureIO, makeTestCa } from '../helpers/fixtures.js';
import { ClusterScratch, testNamespace } from '../helpers/kubernetes.js';

const REAL = 'sk-real-k8s-5a4b3c2d1e-never-inside';

/**
 * On Kubernetes as on Docker, a bound secret never enters the sandbox: not its environment, not a
 * file, not the pod's spec, not a Kubernetes Secret (moat makes none; the gateway keeps the value
 * on moat's side and writes it into the declared header on the way to the bound host).
 */
describe('bound secrets on Kubernetes', () => {
  let ns: Awaited<ReturnType<typeof testNamespace>>;
  let scratch: ClusterScratch;
  const dns = new DnsStub({ 'api.test': '127.0.0.1' });
  const received: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
  let api: Server;
  let moat: Moat;
  let record: TaskRecord;

  beforeAll(async () => {
    ns = await testNamespace();
    scratch = new ClusterScratch(ns.name);
    await dns.start();
    const tls = makeTestCa(scratch.root, 'api.test');
    api = createHttpsServer({ key: readFileSync(tls.key), cert: readFileSync(tls.cert) }, (req, res) => {
      received.push({ url: req.url ?? '', headers: req.headers });
      res.end('echo\n');
    });
    const port = await new Promise<number>((resolve) => api.listen(0, '127.0.0.1', () => resolve((api.address() as { port: number }).port)));
    scratch.writeConfig(
      [
        'acceptUnenforcedLimits: [pids]',
        'network: allowlist',
        // The scripted API listens on loopback, which the gateway refuses unless allowed by address.
        'egress:',
        '  allow: [127.0.0.1/32]',
        'secrets:',
        '  API_KEY:',
        '    from: { env: TEST_REAL_KEY }',
        `    hosts: ["api.test:${port}"]`,
        '    route: api',
        '',
      ].join('\n'),
    );
    moat = scratch.moat({ env: { TEST_REAL_KEY: REAL, MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}`, MOAT_GATEWAY_CA: tls.ca } });
    record = await moat.up({ task: 'keys' });
  });
  afterAll(async () => {
    api?.close();
    dns.stop();
    await scratch?.cleanup();
    await ns?.remove();
  });

  it('the agent sees a placeholder; no process, file, the pod spec or a Secret holds the value', async () => {
    const cap = captureIO();
    await moat.exec(
      'keys',
      [
        'sh',
        '-c',
        'echo "$API_KEY"; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" "\\n" | grep -c "sk-rea[l]"; grep -rsI --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev "sk-rea[l]" / 2>/dev/null | head -1; echo scanned',
      ],
      cap.io,
      { sync: false },
    );
    const lines = cap.out().trim().split('\n');
    expect(lines[0]).toMatch(/^moat-placeholder-api-key-[0-9a-f]{12}$/);
    expect(lines[1]).toBe('0');
    expect(lines[2]).toBe('scanned');
    const pod = await ns.core.readNamespacedPod({ name: record.containerId!, namespace: ns.name });
    expect(JSON.stringify(pod)).not.toContain(REAL);
    expect(pod.spec?.volumes?.some((v) => v.secret !== undefined)).toBe(false);
    const secrets = await ns.core.listNamespacedSecret({ namespace: ns.name });
    // A 1.20 API server still makes the default service account's token Secret; moat makes none.
    expect(secrets.items.filter((s) => s.type !== 'kubernetes.io/service-account-token')).toEqual([]);
    expect(JSON.stringify(secrets)).not.toContain(Buffer.from(REAL).toString('base64'));
  });

  it('the bound host gets the real value in the declared header, through the route, over the exec bridge', async () => {
    const cap = captureIO();
    await moat.exec('keys', ['sh', '-c', 'curl -sS -m 20 http://moat.gateway/api/v1/models'], cap.io, { sync: false });
    expect(cap.out()).toContain('echo');
    expect(cap.out()).not.toContain(REAL.slice(0, 12));
    const last = received.at(-1)!;
    expect(last.url).toBe('/v1/models');
    expect(last.headers.authorization).toBe(`Bearer ${REAL}`);
  });
});
