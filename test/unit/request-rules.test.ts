import { describe, expect, it } from 'vitest';
import { parseTarget } from '../../src/domain/egress-policy.js';
import {
  auditPath,
  buildRequestRules,
  canonicalPath,
  decideRequest,
  inspects,
  rulesFor,
  type RequestRule,
  type RequestRuleSpec,
} from '../../src/domain/request-rules.js';
import { effectiveConfig } from '../../src/config/effective.js';
import { configSchema } from '../../src/config/schema.js';

function rules(specs: RequestRuleSpec[]): RequestRule[] {
  const built = buildRequestRules(specs);
  if ('errors' in built) throw new Error(built.errors.join('; '));
  return built;
}
const host = (name: string) => parseTarget(name)!;
const github = rules([{ host: 'api.github.com', methods: ['GET'], paths: ['/repos/acme/'], from: 'user' }]);
const ask = (set: RequestRule[], method: string, target: string, bodyLength = 0, name = 'api.github.com', port = 443) =>
  decideRequest(rulesFor(set, host(name), port), { method, target, bodyLength });

describe('method and path rules', () => {
  it('admit the methods and paths they name, refuse the rest', () => {
    expect(ask(github, 'GET', '/repos/acme/widget/issues?state=open').allowed).toBe(true);
    expect(ask(github, 'GET', '/repos/acme').allowed).toBe(true);
    expect(ask(github, 'POST', '/repos/acme/widget/issues')).toMatchObject({
      allowed: false,
      status: 403,
      rule: expect.stringContaining('method POST not allowed'),
    });
    expect(ask(github, 'GET', '/repos/other/x')).toMatchObject({ allowed: false, rule: expect.stringContaining('path /repos/other/x not under') });
    // Whole segments: a prefix is not a string prefix.
    expect(ask(github, 'GET', '/repos/acme-evil/x').allowed).toBe(false);
  });

  it.each([
    ['/repos/acme/../other/x', 'dot segment'],
    ['/repos/acme/%2e%2e/other/x', 'dot segment'],
    ['/repos/acme/.%2E/other', 'dot segment'],
    ['/repos/acme/./x', 'dot segment'],
    ['/repos/acme%2f..%2fother/x', 'encoded "/"'],
    ['/repos/acme/%5c..%5cother', 'encoded "\\\\"'],
    ['/repos/acme/%252e%252e/other', 'encoded "%"'],
    ['/repos/acme/x%00', 'encoded "\\u0000"'],
    ['/repos//acme/x', 'empty segment'],
    ['/repos/acme;x=1/../../other', '";" parameters'],
    ['/repos/acme/\\..\\other', 'backslash'],
    ['https://api.github.com/repos/acme/x', 'origin-form'],
    ['/repos/acme/x#frag', 'fragment'],
    ['/repos/acme/%zz', 'malformed'],
    ['/repos/acme/\u00e9', 'printable ASCII'],
  ])('refuse the trick %j (%s)', (target, why) => {
    const decision = ask(github, 'GET', target);
    expect(decision.allowed).toBe(false);
    expect(decision.rule).toContain(why);
  });

  it('read encoded unreserved characters as every server does, and compare case-sensitively', () => {
    expect(canonicalPath('/repos/%61cme/x')).toEqual({ path: '/repos/acme/x', query: false });
    expect(canonicalPath('/a/%c3%a9?q=1')).toEqual({ path: '/a/%C3%A9', query: true });
    expect(ask(github, 'GET', '/repos/%61cme/x').allowed).toBe(true);
    expect(ask(github, 'GET', '/Repos/acme/x').allowed).toBe(false);
    expect(ask(github, 'GET', '/repos/ACME/x').allowed).toBe(false);
  });

  it('cap bodies: a declared length over the cap is refused with 413; the cap is passed on for chunked bodies', () => {
    const npm = rules([{ host: 'registry.npmjs.org', methods: ['GET', 'PUT'], maxBody: 1024, from: 'user' }]);
    expect(ask(npm, 'PUT', '/pkg', 1024, 'registry.npmjs.org')).toMatchObject({ allowed: true, maxBody: 1024 });
    expect(ask(npm, 'PUT', '/pkg', 1025, 'registry.npmjs.org')).toMatchObject({ allowed: false, status: 413 });
    expect(decideRequest(rulesFor(npm, host('registry.npmjs.org'), 443), { method: 'PUT', target: '/pkg' })).toMatchObject({ allowed: true, maxBody: 1024 });
  });

  it("a repository's rules narrow the user's, never widen them", () => {
    const both = rules([
      { host: 'api.github.com', methods: ['GET', 'POST'], from: 'user' },
      { host: 'api.github.com', methods: ['GET', 'DELETE'], paths: ['/repos/acme/'], from: 'repo' },
    ]);
    expect(ask(both, 'GET', '/repos/acme/x').allowed).toBe(true);
    // The user's allows POST; the repository's does not: refused.
    expect(ask(both, 'POST', '/repos/acme/x').allowed).toBe(false);
    // The repository's allows DELETE; the user's does not: refused.
    expect(ask(both, 'DELETE', '/repos/acme/x').allowed).toBe(false);
    expect(ask(both, 'GET', '/users/x').allowed).toBe(false);
  });

  it('apply to the hosts and ports they name; a port an allow entry names for any protocol is not inspected unless the rule names it', () => {
    const set = rules([
      { host: '*.example.com', methods: ['GET'], from: 'user' },
      { host: 'git.test:8443', methods: ['GET'], from: 'user' },
    ]);
    expect(inspects(set, host('a.example.com'), 443)).toBe(true);
    expect(inspects(set, host('example.com'), 443)).toBe(false);
    expect(inspects(set, host('other.test'), 443)).toBe(false);
    expect(inspects(set, host('a.example.com'), 22, true)).toBe(false);
    expect(inspects(set, host('git.test'), 8443, true)).toBe(true);
    expect(inspects(set, host('git.test'), 443)).toBe(false);
  });

  it('refuse bad rules with a reason', () => {
    expect(buildRequestRules([{ host: '10.0.0.0/8', methods: ['GET'], from: 'user' }])).toMatchObject({
      errors: [expect.stringContaining('need a host name')],
    });
    expect(buildRequestRules([{ host: 'a.test', paths: ['/a/../b'], from: 'user' }])).toMatchObject({
      errors: [expect.stringContaining('plain absolute path')],
    });
    expect(buildRequestRules([{ host: 'a.test', methods: ['G ET'], from: 'user' }])).toMatchObject({ errors: [expect.stringContaining('not an HTTP method')] });
  });

  it('audit paths without the query', () => {
    expect(auditPath('/search?token=abc')).toBe('/search?[redacted]');
    expect(auditPath('/plain')).toBe('/plain');
  });
});

describe('rules in the config', () => {
  it("the user's grant their host; a repository's only narrow and need no approval", () => {
    const user = configSchema.parse({
      network: 'allowlist',
      egress: { allow: ['example.com', { 'api.github.com': { methods: ['get'], paths: ['/repos/acme/'], maxBody: '1k' } }] },
    });
    const repo = configSchema.parse({ egress: { allow: [{ 'api.github.com': { methods: ['GET'], paths: ['/repos/acme/widget/'] } }] } });
    const config = effectiveConfig(user, repo, 'moat.yaml', '/r');
    expect(config.egress.allow).toEqual(['example.com', 'api.github.com']);
    expect(config.egress.rules).toEqual([
      { host: 'api.github.com', from: 'user', methods: ['GET'], paths: ['/repos/acme/'], maxBody: 1024 },
      { host: 'api.github.com', from: 'repo', methods: ['GET'], paths: ['/repos/acme/widget/'] },
    ]);
  });

  it("a repository's plain host is still a request that needs approval", () => {
    const user = configSchema.parse({ network: 'allowlist' });
    const repo = configSchema.parse({ egress: { allow: ['evil.test', { 'x.test': { methods: ['GET'] } }] } });
    expect(() => effectiveConfig(user, repo, 'moat.yaml', '/r')).toThrow(/evil\.test/);
    expect(() => effectiveConfig(user, configSchema.parse({ egress: { allow: [{ 'x.test': { methods: ['GET'] } }] } }), 'moat.yaml', '/r')).not.toThrow();
  });

  it('unknown keys in a rule are config errors', () => {
    expect(configSchema.safeParse({ egress: { allow: [{ 'a.test': { method: ['GET'] } }] } }).success).toBe(false);
  });
});
