import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generateTaskName, validateTaskName } from '../../src/domain/task-name.js';
import { formatSize, parseSize } from '../../src/domain/size.js';
import { describeExit, exitReason } from '../../src/domain/exit-reason.js';
import { sandboxSpec } from '../../src/domain/sandbox-spec.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import { MOAT_VERSION } from '../../src/version.js';

describe('task names', () => {
  it.each(['fix-login', 'a', 'x1', 'abc-123-def'])('accepts %s', (name) => expect(validateTaskName(name)).toBe(name));
  it.each(['', '-x', 'x-', 'A', 'a--b', 'a/b', '../x', 'a b', 'a\nb', 'x'.repeat(41), '--force', 'é', 'a\u202eb'])('rejects %j', (name) => {
    expect(() => validateTaskName(name)).toThrow(/invalid task name/);
  });
  it('generates valid names', () => {
    for (let i = 0; i < 50; i += 1) expect(validateTaskName(generateTaskName())).toBeTruthy();
  });
});

describe('sizes', () => {
  it('parses and formats', () => {
    expect(parseSize('512m')).toBe(512 * 1024 ** 2);
    expect(parseSize('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize('0')).toBeUndefined();
    expect(parseSize('12 parsecs')).toBeUndefined();
    expect(formatSize(2 * 1024 ** 3)).toBe('2GiB');
  });
});

describe('exit reasons', () => {
  it('prefers the kernel counters over the status', () => {
    expect(exitReason({ exitCode: 137, oomKilled: true, pidsLimitHit: false }).kind).toBe('oom');
    expect(exitReason({ exitCode: 2, oomKilled: false, pidsLimitHit: true }).kind).toBe('pids-limit');
    expect(exitReason({ exitCode: 143, oomKilled: false, pidsLimitHit: false })).toEqual({ kind: 'signal', signal: 'SIGTERM', code: 143 });
    expect(exitReason({ exitCode: 3, oomKilled: false, pidsLimitHit: false })).toEqual({ kind: 'exit', code: 3 });
    expect(describeExit({ kind: 'oom', code: 137 })).toMatch(/memory limit/);
  });
});

describe('sandbox spec', () => {
  const spec = sandboxSpec({
    containerName: 'c',
    taskName: 't',
    image: 'i',
    workspace: { kind: 'host', path: '/w' },
    uid: 1000,
    gid: 1000,
    limits: DEFAULT_LIMITS,
    env: { HOME: '/root', FOO: 'bar' },
    labels: {},
  });
  it('is hardened whatever the input', () => {
    expect(spec.user).toBe('1000:1000');
    expect(spec.capDrop).toEqual(['ALL']);
    expect(spec.readOnlyRoot).toBe(true);
    expect(spec.network).toBe('none');
    expect(spec.noNewPrivileges).toBe(true);
  });
  it("lets moat's own variables win over granted ones", () => {
    expect(spec.env.HOME).toBe('/home/agent');
    expect(spec.env.FOO).toBe('bar');
  });
});

it('version matches package.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  expect(MOAT_VERSION).toBe(pkg.version);
});
