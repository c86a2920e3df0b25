import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  holdForAnswer,
  MAX_STANDING,
  pendingDir,
  pendingOfTask,
  recordAnswer,
  recordStandingRequest,
  ruleFor,
  STANDING_SECONDS,
} from '../../src/gateway/pending-queue.js';
import { allowInUserConfig, updateUserConfig } from '../../src/config/update-user-config.js';
import { effectiveConfig, egressNetworkOf } from '../../src/config/effective.js';

const request = { task: 't', repoKey: 'r', method: 'CONNECT', host: 'ask.example.com', port: 443 };

describe('the pending egress queue', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'moat-pending-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function waiting(count = 1) {
    for (let i = 0; i < 100 && pendingOfTask(dir).length < count; i += 1) await new Promise((r) => setTimeout(r, 10));
    return pendingOfTask(dir);
  }

  it('holds a request until a human answers, then leaves no file behind', async () => {
    const held = holdForAnswer(dir, request, 10_000, { pollMs: 10 });
    const [queued] = await waiting();
    expect(queued).toMatchObject({ ...request });
    expect(Date.parse(queued!.expiresAt) - Date.parse(queued!.time)).toBe(10_000);
    expect(recordAnswer(dir, queued!.id, 'once', 'ui')).toBe(true);
    await expect(held).resolves.toMatchObject({ answer: 'once', by: 'ui' });
    expect(readdirSync(pendingDir(dir))).toEqual([]);
  });

  it('the first answer wins; a second one, or one for an unknown or malformed id, is refused', async () => {
    const held = holdForAnswer(dir, request, 10_000, { pollMs: 10 });
    const [queued] = await waiting();
    expect(recordAnswer(dir, queued!.id, 'deny', 'cli')).toBe(true);
    expect(recordAnswer(dir, queued!.id, 'always', 'ui')).toBe(false);
    expect(recordAnswer(dir, '0123456789abcdef', 'once', 'ui')).toBe(false);
    expect(recordAnswer(dir, '../../etc/passwd', 'once', 'ui')).toBe(false);
    await expect(held).resolves.toMatchObject({ answer: 'deny', by: 'cli' });
  });

  it('no answer in time is a denial by "timeout", and the request leaves the queue', async () => {
    let clock = 0;
    const held = holdForAnswer(dir, request, 1_000, { pollMs: 5, now: () => clock });
    await waiting();
    clock = 1_000;
    await expect(held).resolves.toMatchObject({ answer: 'deny', by: 'timeout' });
    expect(pendingOfTask(dir)).toEqual([]);
    expect(readdirSync(pendingDir(dir))).toEqual([]);
  });

  it('answered requests no longer show as waiting; several wait side by side, oldest first', async () => {
    const a = holdForAnswer(dir, { ...request, host: 'a.test' }, 10_000, { pollMs: 10 });
    await waiting(1);
    // Ordered by arrival time (ms): two requests in one millisecond have no order between them.
    await new Promise((r) => setTimeout(r, 5));
    const b = holdForAnswer(dir, { ...request, host: 'b.test' }, 10_000, { pollMs: 10 });
    const both = await waiting(2);
    expect(both.map((r) => r.host)).toEqual(['a.test', 'b.test']);
    recordAnswer(dir, both[0]!.id, 'deny', 'ui');
    await a;
    expect(pendingOfTask(dir).map((r) => r.host)).toEqual(['b.test']);
    recordAnswer(dir, both[1]!.id, 'task', 'ui');
    await expect(b).resolves.toMatchObject({ answer: 'task' });
  });

  it("asking is the user's to turn on: a repository that sets egress.ask is refused; the user's default wait is 60 s", () => {
    expect(() => effectiveConfig({ network: 'allowlist' }, { egress: { ask: true } })).toThrow(/egress\.ask/);
    expect(() => effectiveConfig({ network: 'allowlist' }, { egress: { askSeconds: 5 } })).toThrow(/egress\.askSeconds/);
    expect(egressNetworkOf({ egress: { ask: true } }).askSeconds).toBe(60);
    expect(egressNetworkOf({ egress: { ask: true, askSeconds: 5 } }).askSeconds).toBe(5);
    expect(egressNetworkOf({ egress: { askSeconds: 5 } }).askSeconds).toBeUndefined();
  });

  it('a standing request (an agent asking ahead) waits without a connection, once per host, capped, until answered or expired', () => {
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const now = () => clock;
    const asked = { task: 't', repoKey: 'r', method: 'MCP', host: 'registry.example.com', port: 443, reason: 'npm install' };
    const first = recordStandingRequest(dir, asked, now);
    expect(first).toMatchObject({ existing: false, request: { ...asked, standing: true } });
    expect(Date.parse(first!.request.expiresAt) - clock).toBe(STANDING_SECONDS * 1000);
    // Asking again returns the one that waits.
    expect(recordStandingRequest(dir, asked, now)).toMatchObject({ existing: true, request: { id: first!.request.id } });
    for (let i = 1; i < MAX_STANDING; i += 1) expect(recordStandingRequest(dir, { ...asked, host: `h${i}.example.com` }, now)?.existing).toBe(false);
    expect(recordStandingRequest(dir, { ...asked, host: 'one-too-many.example.com' }, now)).toBeUndefined();
    expect(pendingOfTask(dir, now)).toHaveLength(MAX_STANDING);
    // An answer is recorded once; the answered request leaves the queue and its files go.
    expect(recordAnswer(dir, first!.request.id, 'task', 'cli')).toBe(true);
    expect(recordAnswer(dir, first!.request.id, 'deny', 'ui')).toBe(false);
    expect(pendingOfTask(dir, now).map((r) => r.host)).not.toContain('registry.example.com');
    expect(readdirSync(pendingDir(dir)).filter((n) => n.startsWith(first!.request.id))).toEqual([]);
    // Expired ones are removed when the queue is read.
    clock += STANDING_SECONDS * 1000;
    expect(pendingOfTask(dir, now)).toEqual([]);
    expect(readdirSync(pendingDir(dir))).toEqual([]);
  });

  it('the rule an answer adds is the host for web ports, host:port otherwise', () => {
    expect(ruleFor('ask.test', 443)).toBe('ask.test');
    expect(ruleFor('ask.test', 80)).toBe('ask.test');
    expect(ruleFor('ask.test', 22)).toBe('ask.test:22');
  });
});

describe('writing the user config', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'moat-config-write-'));
    file = join(dir, 'config.yaml');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('adds hosts once, keeps comments, other keys and the file mode, and leaves no temp file', async () => {
    writeFileSync(file, '# mine\nnetwork: allowlist\negress:\n  allow: [a.test] # first\n');
    chmodSync(file, 0o640);
    await allowInUserConfig(file, ['b.test', 'a.test']);
    await allowInUserConfig(file, ['b.test']);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('# mine');
    expect(parse(text)).toEqual({ network: 'allowlist', egress: { allow: ['a.test', 'b.test'] } });
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(['config.yaml']);
  });

  it('creates a missing file (mode 0600) and refuses a link, changing nothing', async () => {
    await allowInUserConfig(file, ['x.test']);
    expect(parse(readFileSync(file, 'utf8'))).toEqual({ egress: { allow: ['x.test'] } });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const target = join(dir, 'elsewhere.yaml');
    writeFileSync(target, 'network: none\n');
    const link = join(dir, 'linked.yaml');
    symlinkSync(target, link);
    await expect(allowInUserConfig(link, ['y.test'])).rejects.toMatchObject({ code: 'E_CONFIG_INVALID' });
    expect(readFileSync(target, 'utf8')).toBe('network: none\n');
    expect(existsSync(`${link}.lock`)).toBe(false);
  });

  it('a lock left by a dead process is taken over, and concurrent writers lose nothing', async () => {
    const dist = join(import.meta.dirname, '..', '..', 'dist', 'config', 'update-user-config.js');
    expect(existsSync(dist), 'npm run build first').toBe(true);
    writeFileSync(file, 'egress:\n  allow: []\n');
    // A pid that is certainly dead: a process that has exited.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    writeFileSync(`${file}.lock`, `${dead} 000000000000\n`);
    const writers = 8;
    const script = `import(${JSON.stringify(dist)}).then(async (m) => { for (let i = 0; i < 5; i += 1) await m.allowInUserConfig(process.argv[1], ['w' + process.argv[2] + '-' + i + '.test']); })`;
    const codes = await Promise.all(
      Array.from(
        { length: writers },
        (_, n) =>
          new Promise<number | null>((resolve) => {
            const child = spawn(process.execPath, ['-e', script, file, String(n)], { stdio: 'inherit' });
            child.on('exit', (code) => resolve(code));
          }),
      ),
    );
    expect(codes).toEqual(Array(writers).fill(0));
    const allow = (parse(readFileSync(file, 'utf8')) as { egress: { allow: string[] } }).egress.allow;
    const expected = Array.from({ length: writers }, (_, n) => Array.from({ length: 5 }, (_, i) => `w${n}-${i}.test`)).flat();
    expect([...allow].sort()).toEqual(expected.sort());
    expect(readdirSync(dir)).toEqual(['config.yaml']);
  });

  it('a lock held by a live process is respected (no write, a clear error), and a broken config is refused untouched', async () => {
    writeFileSync(file, 'network: none\n');
    writeFileSync(`${file}.lock`, `${process.pid} 000000000000\n`);
    await expect(updateUserConfig(file, (doc) => doc.set('network', 'open'), { waitMs: 200 })).rejects.toThrow(/is held by process/);
    expect(readFileSync(file, 'utf8')).toBe('network: none\n');
    rmSync(`${file}.lock`, { force: true });
    writeFileSync(file, 'egress: [unclosed\n');
    await expect(allowInUserConfig(file, ['z.test'])).rejects.toMatchObject({ code: 'E_CONFIG_INVALID' });
    expect(readFileSync(file, 'utf8')).toBe('egress: [unclosed\n');
    expect(readdirSync(dir)).toEqual(['config.yaml']);
  });
});
