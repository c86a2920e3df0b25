import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, MOAT_BIN, Scratch, serverPids } from '../helpers/fixtures.js';
import { processAlive } from '../../src/state/process-alive.js';

function cli(scratch: Scratch, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const result = spawnSync(process.execPath, [MOAT_BIN, ...args], {
    cwd: options.cwd ?? scratch.repo,
    env: scratch.env(options.env),
    encoding: 'utf8',
    input: '',
  });
  return { code: result.status, out: result.stdout, err: result.stderr };
}

/** COMMITS in `ls` is what `rm` would discard when nothing is merged: the same count everywhere. */
describe('commit counts in ls', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('a task that committed and is down shows its commits in ls, ls -a (from anywhere) and --json', () => {
    expect(cli(scratch, ['up', '--task', 'counted']).code).toBe(0);
    const exec = cli(scratch, ['exec', 'counted', '--', 'sh', '-c', 'for n in 1 2; do echo $n > f$n && git add f$n && git commit -qm c$n; done']);
    expect(exec.code, exec.err).toBe(0);
    expect(cli(scratch, ['down', 'counted']).code).toBe(0);

    const here = JSON.parse(cli(scratch, ['ls', '--json']).out);
    expect(here).toMatchObject([{ name: 'counted', state: 'stopped', commits: 2 }]);
    // -a lists every repository's tasks: each counted in its own repository, also from outside any.
    for (const cwd of [scratch.repo, scratch.root]) {
      const all = JSON.parse(cli(scratch, ['ls', '-a', '--json'], { cwd }).out);
      expect(all, cwd).toMatchObject([{ name: 'counted', commits: 2 }]);
      const text = cli(scratch, ['ls', '-a'], { cwd }).out.split('\n');
      const header = text[0]!.split(/\s{2,}/);
      const row = text.find((line) => line.startsWith('counted'))!.split(/\s{2,}/);
      expect(row[header.indexOf('COMMITS')]).toBe('2');
    }
    const rm = cli(scratch, ['rm', '--force', 'counted']);
    expect(rm.out).toContain('2 unmerged commit(s) discarded');
  });
});

/** Each distinct environment has a server of its own; there are at most MOAT_SERVER_MAX of them. */
describe('the cap on warm servers', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());
  const dir = () => join(scratch.root, 'run', `moat-${process.getuid!()}`);
  /**
   * Servers whose process runs, by their pid files. A server that stops removes its pid file, maybe
   * between the listing and the read: serverPids allows for that (a read of it here threw ENOENT).
   */
  const live = () => serverPids(join(scratch.root, 'run')).filter((pid) => processAlive(pid));

  it('stops the least recently used past the cap, and removes the files of dead ones', async () => {
    const env = (n: number) => ({ MOAT_SERVER_MAX: '2', MOAT_OTHER: String(n) });
    expect(cli(scratch, ['ls'], { env: env(1) }).code).toBe(0);
    const [first] = await eventually(
      async () => live(),
      (list) => list.length === 1,
      10_000,
    );
    // What a server killed outright leaves behind, long enough ago.
    const stale = join(dir(), `${'0'.repeat(32)}.sock`);
    writeFileSync(stale, '');
    writeFileSync(`${stale}.pid`, '999999999\n');
    const old = new Date(Date.now() - 60_000);
    for (const file of [stale, `${stale}.pid`]) utimesSync(file, old, old);

    const pids: number[] = [];
    for (const n of [2, 3]) {
      expect(cli(scratch, ['ls'], { env: env(n) }).code).toBe(0);
      // Each server starts after its first command, in the background.
      const now = await eventually(
        async () => live(),
        (list) => list.some((pid) => pid !== first && !pids.includes(pid)),
        10_000,
      );
      pids.push(now.find((pid) => pid !== first && !pids.includes(pid))!);
    }
    expect(pids.every(Boolean)).toBe(true);
    // Three environments were served, two servers stay: the first one (least recently used) left.
    const left = await eventually(
      async () => live(),
      (list) => list.length <= 2,
      10_000,
    );
    expect(left.sort()).toEqual([...pids].sort());
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(`${stale}.pid`)).toBe(false);
    // The socket directory holds the two live servers' files (socket, pid, retirable), nothing more.
    expect(readdirSync(dir()).filter((f) => !f.endsWith('.starting')).length).toBe(6);
  });

  it('a server past the cap finishes the command it is running before it stops', async () => {
    const env = (n: number) => ({ MOAT_SERVER_MAX: '1', MOAT_OTHER: `busy-${n}` });
    expect(cli(scratch, ['up', '--task', 'busy'], { env: { MOAT_SERVER: 'off' } }).code).toBe(0);
    expect(cli(scratch, ['ls'], { env: env(1) }).code).toBe(0);
    const before = live();
    const [first] = await eventually(
      async () => live().filter((pid) => !before.includes(pid)),
      (list) => list.length === 1,
      10_000,
    );
    // A command on the first server, still running while another environment's server starts.
    const running = spawn(process.execPath, [MOAT_BIN, 'exec', 'busy', '--', 'sh', '-c', 'touch /tmp/started; sleep 3; echo finished'], {
      cwd: scratch.repo,
      env: scratch.env(env(1)),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    running.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const status = new Promise<number | null>((resolve) => running.once('close', resolve));
    await eventually(
      async () =>
        spawnSync('docker', [
          'exec',
          JSON.parse(cli(scratch, ['ls', '--json'], { env: { MOAT_SERVER: 'off' } }).out)[0].containerId,
          'test',
          '-e',
          '/tmp/started',
        ]).status,
      (s) => s === 0,
      10_000,
    );
    expect(cli(scratch, ['ls'], { env: env(2) }).code).toBe(0);
    await eventually(
      async () => live().filter((pid) => !before.includes(pid) && pid !== first).length,
      (n) => n === 1,
      10_000,
    );
    expect(live()).toContain(first);
    expect(await status).toBe(0);
    expect(out).toBe('finished\n');
    // Then it leaves.
    await eventually(
      async () => live().includes(first!),
      (alive) => !alive,
      10_000,
    );
    expect(live()).not.toContain(first);
  });
});

/** A sandbox that makes denied attempts in a loop must not grow a host file past the audit cap. */
describe('the egress audit log cap', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());
  const cap = 16 * 1024;

  it("keeps a task's log under its cap, the newest attempts readable with moat egress", async () => {
    const env = { MOAT_AUDIT_MAX_BYTES: String(cap), MOAT_SERVER: 'off' };
    expect(cli(scratch, ['up', '--task', 'loud', '--allow', 'allowed.test'], { env }).code).toBe(0);
    // 400 refused requests (curl's URL globbing), about 80 KB of audit lines uncapped.
    const loop = cli(scratch, ['exec', 'loud', '--no-sync', '--', 'sh', '-c', 'curl -s -o /dev/null -m 60 "http://d[1-400].test/"; echo done'], { env });
    expect(loop.out, loop.err).toContain('done');
    const audit = join(scratch.home, 'repos', readdirSync(join(scratch.home, 'repos'))[0]!, 'tasks', 'loud', 'egress', 'audit.jsonl');
    const records = await eventually(
      async () =>
        JSON.parse(`[${cli(scratch, ['egress', 'loud', '--json'], { env }).out.trim().split('\n').join(',')}]`) as Array<{ host: string; decision: string }>,
      (r) => r.at(-1)?.host === 'd400.test',
      10_000,
    );
    expect(statSync(audit).size).toBeLessThanOrEqual(cap);
    expect(statSync(`${audit}.1`).size).toBeLessThanOrEqual(cap);
    // The newest are kept, in order, none missing in between; the rotated file is read too.
    const first = Number(records[0]!.host.slice(1).split('.')[0]);
    expect(records.map((r) => r.host)).toEqual(Array.from({ length: 401 - first }, (_, i) => `d${first + i}.test`));
    expect(records.every((r) => r.decision === 'denied')).toBe(true);
    expect(readFileSync(audit, 'utf8').length + readFileSync(`${audit}.1`, 'utf8').length).toBeGreaterThan(cap);
    const ls = JSON.parse(cli(scratch, ['ls', '--json'], { env }).out);
    expect(ls[0].egress).toEqual({ allowed: 0, denied: records.length });
  });

  it('moat doctor lists every cap on what a sandbox can grow on the host, with what it takes now', () => {
    const env = { MOAT_AUDIT_MAX_BYTES: String(cap), MOAT_SERVER_MAX: '2' };
    const report = JSON.parse(cli(scratch, ['doctor', '--json'], { env }).out) as { caps: Array<{ name: string; cap: string; now?: string }> };
    const caps = Object.fromEntries(report.caps.map((c) => [c.name, c]));
    expect(Object.keys(caps).sort()).toEqual(['container logs', 'egress audit log', 'snapshot bundles', 'warm servers', 'workspace disk']);
    expect(caps['egress audit log']!.cap).toContain('16KiB per file, rotated once: at most 32KiB per task');
    // The loop above filled both files of the one task.
    expect(caps['egress audit log']!.now).toMatch(/^\d+(\.\d)?KiB across 1 task\(s\)$/);
    expect(caps['container logs']!.cap).toContain('at most 30MiB per task');
    expect(caps['snapshot bundles']!.cap).toContain('at most 2GiB per sync');
    expect(caps['warm servers']!.cap).toContain('at most 2 per user');
    expect(caps['workspace disk']!.cap).toMatch(/limits\.disk \(10GiB per task\)|NOT capped/);
    const text = cli(scratch, ['doctor'], { env }).out;
    for (const name of Object.keys(caps)) expect(text).toMatch(new RegExp(`^  ${name}: `, 'm'));
  });
});
