import { describe, expect, it } from 'vitest';
import { buildPolicy, decideAddress, decideTarget, parseRule, parseTarget, type EgressPolicy } from '../../src/domain/egress-policy.js';
import { classifyAddress, formatIp, parseIp } from '../../src/domain/ip-address.js';
import { readSni } from '../../src/gateway/tls-sni.js';
import { bypassesProxy, parseProxyUrl, proxyFor, redactProxy } from '../../src/gateway/upstream-proxy.js';
import { denialResponse, denialSentence } from '../../src/gateway/denials.js';
import { effectiveConfig } from '../../src/config/effective.js';

function policy(allow: string[], deny: string[] = [], mode: 'allowlist' | 'open' | 'none' = 'allowlist'): EgressPolicy {
  const built = buildPolicy(mode, allow, deny);
  if ('errors' in built) throw new Error(built.errors.join('; '));
  return built;
}
const t = (host: string) => parseTarget(host)!;

describe('host names are parsed the way a connection would see them', () => {
  it.each([
    ['Example.COM.', 'example.com'],
    ['a-b.example.com', 'a-b.example.com'],
  ])('%s is the name %s', (raw, name) => expect(parseTarget(raw)).toEqual({ kind: 'name', name }));

  it.each(['127.1', '0x7f.0.0.1', '2130706433', '0177.0.0.1', '127.0.0.1.', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]'])(
    '%s is an IP address, not a name',
    (raw) => {
      expect(parseTarget(raw)?.kind).toBe('ip');
    },
  );

  it.each(['', 'a..b', 'exa mple.com', 'evil.com\u0000.allowed.com', 'x%2f.com', '-a.com', '[fe80::1%eth0]', 'a'.repeat(64) + '.com', '999.1.1.1'])(
    '%j is refused',
    (raw) => {
      expect(parseTarget(raw)).toBeUndefined();
    },
  );

  it('spellings of one address are the same address', () => {
    const forms = ['127.0.0.1', '127.1', '0x7f.0.0.1', '2130706433', '0177.0.0.01'].map((f) => formatIp(parseIp(f)!));
    expect(new Set(forms)).toEqual(new Set(['127.0.0.1']));
  });
});

describe('rules', () => {
  it.each(['*', '*.com', 'a*.example.com', 'exa mple.com', '10.0.0.0/33', 'host:99999'])('rejects %j', (rule) => {
    expect(typeof parseRule(rule)).toBe('string');
  });

  it('exact names, wildcards (subdomains only), ports', () => {
    const p = policy(['example.com', '*.wild.org', 'api.port.net:443']);
    expect(decideTarget(p, t('example.com'), 443).allowed).toBe(true);
    expect(decideTarget(p, t('sub.example.com'), 443).allowed).toBe(false);
    expect(decideTarget(p, t('a.wild.org'), 80).allowed).toBe(true);
    expect(decideTarget(p, t('a.b.wild.org'), 80).allowed).toBe(true);
    expect(decideTarget(p, t('wild.org'), 80).allowed).toBe(false);
    expect(decideTarget(p, t('evilwild.org'), 80).allowed).toBe(false);
    expect(decideTarget(p, t('api.port.net'), 443).allowed).toBe(true);
    expect(decideTarget(p, t('api.port.net'), 80).allowed).toBe(false);
  });

  it('a rule with a port admits any protocol there, even after a rule for the bare name', () => {
    for (const rules of [
      ['github.com', 'github.com:22'],
      ['github.com:22', 'github.com'],
    ]) {
      const p = policy(rules);
      expect(decideTarget(p, t('github.com'), 22)).toMatchObject({ allowed: true, rule: 'allow github.com:22', anyProtocol: true });
      expect(decideTarget(p, t('github.com'), 443)).toEqual({ allowed: true, rule: 'allow github.com' });
    }
  });

  it('deny wins over allow; none and empty allowlists allow nothing', () => {
    expect(decideTarget(policy(['*.example.com'], ['bad.example.com']), t('bad.example.com'), 443)).toEqual({ allowed: false, rule: 'deny bad.example.com' });
    expect(decideTarget(policy([]), t('example.com'), 443).allowed).toBe(false);
    expect(decideTarget(policy(['example.com'], [], 'none'), t('example.com'), 443).allowed).toBe(false);
    expect(decideTarget(policy([], ['bad.com'], 'open'), t('bad.com'), 443).allowed).toBe(false);
    expect(decideTarget(policy([], [], 'open'), t('good.com'), 443).allowed).toBe(true);
  });

  it('IP literals only when listed', () => {
    const p = policy(['example.com', '203.0.113.7', '10.1.0.0/16']);
    expect(decideTarget(p, t('203.0.113.7'), 80).allowed).toBe(true);
    expect(decideTarget(p, t('203.0.113.8'), 80).allowed).toBe(false);
    expect(decideTarget(p, t('10.1.2.3'), 80).allowed).toBe(true);
  });
});

describe('addresses behind a name', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.5.4', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'metadata'],
    ['169.254.1.1', 'link-local'],
    ['100.64.0.1', 'cgnat'],
    ['224.0.0.1', 'multicast'],
    ['0.0.0.0', 'unspecified'],
    ['::1', 'loopback'],
    ['::ffff:10.0.0.1', 'ipv4-mapped'],
    ['64:ff9b::a00:1', 'nat64'],
    ['fd00:ec2::254', 'metadata'],
    ['fd12::1', 'unique-local'],
    ['fe80::1', 'link-local'],
    ['93.184.216.34', 'public'],
    ['2606:4700::1', 'public'],
  ])('%s is %s', (ip, cls) => expect(classifyAddress(parseIp(ip)!)).toBe(cls));

  it('are refused when internal unless a CIDR names them', () => {
    const p = policy(['example.com', '10.9.0.0/16']);
    expect(decideAddress(p, parseIp('169.254.169.254')!, 80).allowed).toBe(false);
    expect(decideAddress(p, parseIp('10.9.1.1')!, 80).allowed).toBe(true);
    expect(decideAddress(p, parseIp('10.8.1.1')!, 80).allowed).toBe(false);
    expect(decideAddress(p, parseIp('93.184.216.34')!, 80).allowed).toBe(true);
  });
});

describe('TLS server name', () => {
  function clientHello(names: string[]): Buffer {
    const ext = names.length
      ? (() => {
          const entries = Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), Buffer.from([n.length >> 8, n.length & 255]), Buffer.from(n)])));
          const list = Buffer.concat([Buffer.from([entries.length >> 8, entries.length & 255]), entries]);
          return Buffer.concat([Buffer.from([0, 0, list.length >> 8, list.length & 255]), list]);
        })()
      : Buffer.alloc(0);
    const body = Buffer.concat([
      Buffer.from([3, 3]),
      Buffer.alloc(32),
      Buffer.from([0]),
      Buffer.from([0, 2, 0x13, 0x01]),
      Buffer.from([1, 0]),
      Buffer.from([ext.length >> 8, ext.length & 255]),
      ext,
    ]);
    const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 255]), body]);
    return Buffer.concat([Buffer.from([22, 3, 1, hs.length >> 8, hs.length & 255]), hs]);
  }
  it('reads one name, and refuses two', () => {
    expect(readSni(clientHello(['allowed.test']))).toEqual({ kind: 'sni', name: 'allowed.test' });
    expect(readSni(clientHello([]))).toEqual({ kind: 'no-sni' });
    expect(readSni(clientHello(['a.test', 'b.test'])).kind).toBe('not-tls');
    expect(readSni(Buffer.from('GET / HTTP/1.1\r\n\r\n')).kind).toBe('not-tls');
    expect(readSni(clientHello(['allowed.test']).subarray(0, 20)).kind).toBe('incomplete');
  });
});

describe("allowAddresses: a range allowed names may resolve into (the network's inspecting proxy)", () => {
  const ip = (text: string) => parseIp(text)!;
  const withRange = (ranges: string[], allow = ['registry.npmjs.org']) => {
    const built = buildPolicy('allowlist', allow, [], ranges);
    if ('errors' in built) throw new Error(built.errors.join('; '));
    return built;
  };

  it('admits an address in the range behind an allowed name, and nothing outside it', () => {
    expect(decideAddress(policy(['registry.npmjs.org']), ip('203.0.113.80'), 443).allowed).toBe(false);
    expect(decideAddress(withRange(['203.0.113.0/24']), ip('203.0.113.80'), 443)).toMatchObject({ allowed: true, rule: 'allowAddresses 203.0.113.0/24' });
    expect(decideAddress(withRange(['203.0.113.0/24']), ip('198.51.100.1'), 443).allowed).toBe(false);
  });

  it('never makes an address a target by itself: an IP literal still needs an allow rule', () => {
    expect(decideTarget(withRange(['203.0.113.0/24']), t('203.0.113.80'), 443).allowed).toBe(false);
  });

  it('loopback and cloud metadata stay refused even inside an admitted range; deny still wins', () => {
    expect(decideAddress(withRange(['127.0.0.0/8']), ip('127.0.0.1'), 443).allowed).toBe(false);
    expect(decideAddress(withRange(['169.254.0.0/16']), ip('169.254.169.254'), 80).allowed).toBe(false);
    const denied = buildPolicy('allowlist', ['a.test'], ['203.0.113.5'], ['203.0.113.0/24']) as EgressPolicy;
    expect(decideAddress(denied, ip('203.0.113.5'), 443).allowed).toBe(false);
  });

  it.each(['0.0.0.0/0', '10.0.0.0/7', 'not-a-range', '::/0'])('refuses the range %j', (range) => {
    expect(buildPolicy('allowlist', [], [], [range])).toHaveProperty('errors');
  });
});

describe('the upstream proxy: which connections go through it', () => {
  it('NO_PROXY entries match names and their subdomains, IPs and CIDR blocks, with an optional port', () => {
    const list = ['.internal.example', 'corp.example', '10.0.0.0/8', 'exact.example:8443'];
    expect(bypassesProxy(list, t('a.internal.example'), 443)).toBe(true);
    expect(bypassesProxy(list, t('corp.example'), 443)).toBe(true);
    expect(bypassesProxy(list, t('x.corp.example'), 443)).toBe(true);
    expect(bypassesProxy(list, t('notcorp.example'), 443)).toBe(false);
    expect(bypassesProxy(list, t('10.1.2.3'), 80)).toBe(true);
    expect(bypassesProxy(list, t('exact.example'), 443)).toBe(false);
    expect(bypassesProxy(list, t('exact.example'), 8443)).toBe(true);
    expect(bypassesProxy(['*'], t('any.example'), 443)).toBe(true);
  });

  it('proxy URLs: http only, credentials kept for the gateway and never in the label', () => {
    const proxy = parseProxyUrl('http://user:p%40ss@proxy.corp:3128');
    expect(proxy).toEqual({ host: 'proxy.corp', port: 3128, authorization: `Basic ${Buffer.from('user:p@ss').toString('base64')}`, label: 'proxy.corp:3128' });
    expect(parseProxyUrl('proxy.corp:8080')).toMatchObject({ host: 'proxy.corp', port: 8080 });
    expect(typeof parseProxyUrl('https://proxy.corp:443')).toBe('string');
    expect(typeof parseProxyUrl('socks5://proxy.corp:1080')).toBe('string');
    expect(redactProxy('http://user:secret@proxy:1')).toBe('http://***@proxy:1');
  });

  it("proxyFor picks the scheme's proxy unless NO_PROXY says direct", () => {
    const config = { https: 'http://p:1', http: 'http://q:2', noProxy: ['direct.example'] };
    expect(proxyFor(config, 'https', t('a.example'), 443)).toMatchObject({ host: 'p', port: 1 });
    expect(proxyFor(config, 'http', t('a.example'), 80)).toMatchObject({ host: 'q', port: 2 });
    expect(proxyFor(config, 'https', t('direct.example'), 443)).toBeUndefined();
    expect(proxyFor({ http: 'http://q:2' }, 'https', t('a.example'), 443)).toBeUndefined();
  });
});

describe('a refusal an agent can read', () => {
  it('names moat, the host, the reason and what a human can do, in the body and a Proxy-Status header', () => {
    const sentence = denialSentence('t1', 'exfil.test', 443, 'not in allowlist: exfil.test', 'policy');
    expect(sentence).toBe(
      'moat: egress denied (not in allowlist: exfil.test) for exfil.test:443. If the task needs it, ask the user to run: moat allow t1 exfil.test. Recent denials: moat-why',
    );
    const response = denialResponse('403 Forbidden', sentence, 'not in allowlist: exfil.test', 'policy');
    expect(response).toMatch(/^HTTP\/1\.1 403 moat refused: not in allowlist: exfil\.test\r\n/);
    expect(response).toContain('\r\nProxy-Status: moat; error=http_request_denied; details="not in allowlist: exfil.test"\r\n');
    expect(response.endsWith(`\r\n\r\n${sentence}\n`)).toBe(true);
  });

  it("control characters and quotes from the agent's request never reach the header or the text raw", () => {
    const rule = 'TLS server name "evil\u001b[2K\r\nX: y" is not the CONNECT host';
    const response = denialResponse('403 Forbidden', denialSentence('t', 'a.test', 443, rule, 'request'), rule, 'request');
    const head = response.slice(0, response.indexOf('\r\n\r\n'));
    expect(head.split('\r\n').every((line) => /^[\x20-\x7e]*$/.test(line))).toBe(true);
    expect(head).not.toContain('X: y\r\n');
  });
});

describe("the network settings are the user's alone", () => {
  it.each([
    [{ allowAddresses: ['203.0.113.0/24'] }, 'egress.allowAddresses'],
    [{ trustCa: ['/etc/evil.pem'] }, 'egress.trustCa'],
    [{ trustHostCa: true }, 'egress.trustHostCa'],
    [{ upstreamProxy: 'http://evil:1' }, 'egress.upstreamProxy'],
    [{ noProxy: ['*'] }, 'egress.noProxy'],
  ])('a repository asking for %j is refused, naming the key', (egress, key) => {
    let error: unknown;
    try {
      effectiveConfig({ network: 'allowlist' }, { egress } as never, 'moat.yaml', '/r');
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: 'E_CONFIG_WIDENS', message: expect.stringContaining(key) });
  });

  it('from the user config they reach the effective config', () => {
    const config = effectiveConfig(
      { egress: { allowAddresses: ['203.0.113.0/24'], trustHostCa: true, upstreamProxy: 'http://p:3128', noProxy: ['corp'] } },
      {},
    );
    expect(config.egressNetwork).toEqual({
      allowAddresses: ['203.0.113.0/24'],
      trustCa: [],
      trustHostCa: true,
      upstreamProxy: 'http://p:3128',
      noProxy: ['corp'],
    });
  });
});
