import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/parse.js';
import { effectiveConfig } from '../../src/config/effective.js';
import { configJsonSchema } from '../../src/config/json-schema.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import { isMoatError, type MoatError } from '../../src/errors.js';

function failure(fn: () => unknown): MoatError {
  try {
    fn();
  } catch (error) {
    if (isMoatError(error)) return error;
    throw error;
  }
  throw new Error('expected a MoatError');
}

describe('config parsing', () => {
  it('accepts YAML and JSON with sizes', () => {
    expect(parseConfig('limits:\n  memory: 1g\n  pids: 100\n', 'c.yaml').limits).toEqual({ memory: '1g', pids: 100 });
    expect(parseConfig('{"template": "shell"}', 'c.json').template).toBe('shell');
    expect(parseConfig('', 'empty.yaml')).toEqual({});
  });

  it('names file:line:col of an unknown key', () => {
    const error = failure(() => parseConfig('template: shell\nlimits:\n  memory: 1g\n  memroy: 2g\n', 'moat.yaml'));
    expect(error.code).toBe('E_CONFIG_INVALID');
    expect(error.message).toBe('moat.yaml:4:3: limits.memroy: unknown key');
    expect(error.hint).toMatch(/README|schema/);
    expect(error.exitCode).toBe(3);
  });

  it('names file:line:col of a bad value', () => {
    const error = failure(() => parseConfig('limits:\n  memory: lots\n', 'u.yaml'));
    expect(error.message).toMatch(/^u\.yaml:2:11: limits\.memory: expected a size/);
    const pids = failure(() => parseConfig('limits:\n  pids: -1\n', 'u.yaml'));
    expect(pids.message).toMatch(/^u\.yaml:2:9: limits\.pids:/);
  });

  it('reports every problem, and YAML syntax errors with their position', () => {
    const error = failure(() => parseConfig('network: wide\ncolour: blue\n', 'u.yaml'));
    expect(error.details?.problems).toHaveLength(2);
    expect(error.message).toContain('(and 1 more)');
    const syntax = failure(() => parseConfig('limits: [\n', 'bad.yaml'));
    expect(syntax.message).toMatch(/^bad\.yaml:\d+:\d+: /);
  });

  it('rejects duplicate keys (a reviewer would read only one of them)', () => {
    expect(failure(() => parseConfig('template: shell\ntemplate: other\n', 'd.yaml')).code).toBe('E_CONFIG_INVALID');
  });
});

describe('repository config may only narrow', () => {
  it('lowers limits below the user grant', () => {
    const config = effectiveConfig({ limits: { memory: '4g' } }, { limits: { memory: '1g', pids: 64 } });
    expect(config.limits.memoryBytes).toBe(1024 ** 3);
    expect(config.limits.pids).toBe(64);
    expect(config.limits.cpus).toBe(DEFAULT_LIMITS.cpus);
  });

  it('refuses higher limits, naming the user-config key', () => {
    const error = failure(() => effectiveConfig({}, { limits: { memory: '64g' } }, '/r/moat.yaml'));
    expect(error.code).toBe('E_CONFIG_WIDENS');
    expect(error.message).toContain('limits.memory');
    expect(error.message).toContain('/r/moat.yaml');
  });

  it.each([
    ['env', { env: { A: 'b' } }],
    ['envPassthrough', { envPassthrough: ['HOME'] }],
    ['baseImage', { baseImage: 'evil:latest' }],
    ['sandboxUid', { sandboxUid: 5 }],
  ])('refuses %s from the repository', (key, repo) => {
    const error = failure(() => effectiveConfig({}, repo));
    expect(error.code).toBe('E_CONFIG_WIDENS');
    expect(error.message).toContain(key);
  });

  it('network: a repository may only narrow, and may add deny rules but not allow rules', () => {
    expect(effectiveConfig({ network: 'allowlist' }, { network: 'none' }).network).toBe('none');
    expect(failure(() => effectiveConfig({ network: 'allowlist' }, { network: 'open' })).message).toContain('network: open');
    expect(failure(() => effectiveConfig({}, { network: 'allowlist' })).code).toBe('E_CONFIG_WIDENS');
    expect(failure(() => effectiveConfig({ network: 'allowlist' }, { egress: { allow: ['evil.com'] } }, 'moat.yaml', '/r')).message).toContain(
      'evil.com, which you have not approved',
    );
    // Approved for this repository (moat approve): granted, and it brings the network it needs.
    const approved = effectiveConfig(
      { approvals: { '/r': { egress: ['registry.npmjs.org'] } } },
      { egress: { allow: ['registry.npmjs.org'] } },
      'moat.yaml',
      '/r',
    );
    expect(approved.network).toBe('allowlist');
    expect(approved.egress.allow).toEqual(['registry.npmjs.org']);
    // An approval for another repository, or for other hosts, counts for nothing.
    expect(
      failure(() =>
        effectiveConfig({ approvals: { '/other': { egress: ['registry.npmjs.org'] } } }, { egress: { allow: ['registry.npmjs.org'] } }, 'moat.yaml', '/r'),
      ).code,
    ).toBe('E_CONFIG_WIDENS');
    expect(
      failure(() => effectiveConfig({ approvals: { '/r': { egress: ['a.com'] } } }, { egress: { allow: ['a.com', 'b.com'] } }, 'moat.yaml', '/r')).message,
    ).toContain('b.com');
    // A repository cannot approve for itself.
    expect(failure(() => effectiveConfig({}, { approvals: { '/r': { egress: ['x.com'] } } } as never)).message).toContain('approvals');
    expect(effectiveConfig({ network: 'allowlist', egress: { allow: ['a.com'] } }, { egress: { deny: ['b.com'] } }).egress).toEqual({
      allow: ['a.com'],
      deny: ['b.com'],
      rules: [],
    });
  });

  it("isolation: a repository may ask for gvisor, never turn off the user's", () => {
    expect(effectiveConfig({}, {}).isolation).toBe('runc');
    expect(effectiveConfig({}, { isolation: 'gvisor' }).isolation).toBe('gvisor');
    expect(effectiveConfig({ isolation: 'gvisor' }, {}).isolation).toBe('gvisor');
    expect(effectiveConfig({ isolation: 'gvisor' }, { isolation: 'gvisor' }).isolation).toBe('gvisor');
    const error = failure(() => effectiveConfig({ isolation: 'gvisor' }, { isolation: 'runc' }, '/r/moat.yaml'));
    expect(error.code).toBe('E_CONFIG_WIDENS');
    expect(error.exitCode).toBe(3);
    expect(error.message).toContain('isolation: runc weaker than your gvisor');
    expect(() => parseConfig('isolation: kata\n', 'c.yaml')).toThrow(/isolation/);
  });

  it('takes env only from the user config', () => {
    expect(effectiveConfig({ env: { A: '1' }, envPassthrough: ['B'] }, {}).env).toEqual({ A: '1' });
  });
});

describe('JSON schema', () => {
  it('is generated from the zod schema and has not drifted (npm run build && npm run schema)', () => {
    const onDisk = JSON.parse(readFileSync(new URL('../../schema/config.schema.json', import.meta.url), 'utf8'));
    expect(onDisk).toEqual(configJsonSchema());
  });

  it('describes every field', () => {
    const schema = configJsonSchema() as { properties: Record<string, { description?: string }> };
    for (const [key, value] of Object.entries(schema.properties)) expect(value.description, key).toBeTruthy();
  });
});
