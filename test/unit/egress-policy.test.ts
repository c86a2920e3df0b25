import { describe, expect, it } from 'vitest';
import { buildPolicy, decideAddress, decideTarget, parseRule, parseTarget, type EgressPolicy } from '../../src/domain/egress-policy.js';
import { classifyAddress, formatIp, parseIp } from '../../src/domain/ip-address.js';
import { readSni } from '../../src/gateway/tls-sni.js';

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

  it.each(['127.1', '0x7f.0.0.1', '2130706433', '0177.0.0.1', '127.0.0.1.', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]'])('%s is an IP address, not a name', (raw) => {
    expect(parseTarget(raw)?.kind).toBe('ip');
  });

  it.each(['', 'a..b', 'exa mple.com', 'evil.com\u0000.allowed.com', 'x%2f.com', '-a.com', '[fe80::1%eth0]', 'a'.repeat(64) + '.com', '999.1.1.1'])('%j is refused', (raw) => {
    expect(parseTarget(raw)).toBeUndefined();
  });

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
    for (const rules of [['github.com', 'github.com:22'], ['github.com:22', 'github.com']]) {
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
    ['127.0.0.1', 'loopback'], ['10.0.0.1', 'private'], ['172.16.5.4', 'private'], ['192.168.1.1', 'private'], ['169.254.169.254', 'metadata'],
    ['169.254.1.1', 'link-local'], ['100.64.0.1', 'cgnat'], ['224.0.0.1', 'multicast'], ['0.0.0.0', 'unspecified'], ['::1', 'loopback'],
    ['::ffff:10.0.0.1', 'ipv4-mapped'], ['64:ff9b::a00:1', 'nat64'], ['fd00:ec2::254', 'metadata'], ['fd12::1', 'unique-local'], ['fe80::1', 'link-local'],
    ['93.184.216.34', 'public'], ['2606:4700::1', 'public'],
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
    const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32), Buffer.from([0]), Buffer.from([0, 2, 0x13, 0x01]), Buffer.from([1, 0]), Buffer.from([ext.length >> 8, ext.length & 255]), ext]);
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
