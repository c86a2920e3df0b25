import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { maxServers, retireExcessServers, warmServers } from '../../src/service/warm-servers.js';

describe('the warm servers of a user', () => {
  let dir: string;
  const children: ChildProcess[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'moat-servers-'));
  });
  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** A process that looks like the server of `name` (its argv has __serve and the socket), last used `ago` ms back. */
  function server(name: string, ago: number, retirable = true): number {
    const socket = join(dir, `${name}.sock`);
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)', '__serve', socket], { stdio: 'ignore' });
    children.push(child);
    writeFileSync(socket, '');
    writeFileSync(`${socket}.pid`, `${child.pid}\n`);
    if (retirable) writeFileSync(`${socket}.retirable`, `${child.pid}\n`);
    const when = new Date(Date.now() - ago);
    utimesSync(`${socket}.pid`, when, when);
    return child.pid!;
  }
  function files(name: string, ago: number, kinds: string[], pid?: number): void {
    const when = new Date(Date.now() - ago);
    for (const kind of kinds) {
      const path = join(dir, `${name}.sock${kind}`);
      writeFileSync(path, kind === '.pid' ? `${pid ?? 999_999_999}\n` : '');
      utimesSync(path, when, when);
    }
  }

  it("asks the least recently used past the cap to stop, never itself, and removes dead servers' files", async () => {
    const oldest = server('a', 30_000);
    const middle = server('b', 20_000);
    const newest = server('c', 10_000);
    const self = server('self', 0);
    // Dead: a pid file naming a process that is not a server (this test runner), and a bare old socket.
    files('dead', 60_000, ['', '.pid'], process.pid);
    files('bare', 60_000, ['']);
    // Starting: a fresh start lock and a socket bound a moment ago, no pid file yet.
    files('starting', 0, ['', '.starting']);
    await new Promise((resolve) => setTimeout(resolve, 300));

    const signalled: number[] = [];
    const retired = await retireExcessServers(dir, join(dir, 'self.sock'), 2, (pid) => void signalled.push(pid));
    expect(retired).toEqual([oldest, middle]);
    expect(signalled).toEqual([oldest, middle]);
    expect(
      readdirSync(dir)
        .filter((name) => !name.endsWith('.retirable'))
        .sort(),
    ).toEqual([
      'a.sock',
      'a.sock.pid',
      'b.sock',
      'b.sock.pid',
      'c.sock',
      'c.sock.pid',
      'self.sock',
      'self.sock.pid',
      'starting.sock',
      'starting.sock.starting',
    ]);
    expect((await warmServers(dir)).map((s) => s.pid).sort()).toEqual([oldest, middle, newest, self].sort());
    expect(existsSync(join(dir, 'dead.sock.pid'))).toBe(false);
  });

  it('never signals a server of an older build (no handler: the signal would end it mid-command); those count towards the cap', async () => {
    const older = server('older', 40_000, false);
    const forged = server('forged', 35_000, false);
    // A retirable file naming another process (a server of a newer build died there) says nothing of this one.
    writeFileSync(join(dir, 'forged.sock.retirable'), '999999999\n');
    const recent = server('recent', 30_000);
    server('newest', 10_000);
    server('self', 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const signalled: number[] = [];
    expect(await retireExcessServers(dir, join(dir, 'self.sock'), 4, (pid) => void signalled.push(pid))).toEqual([recent]);
    expect(signalled).toEqual([recent]);
    expect(signalled).not.toContain(older);
    expect(signalled).not.toContain(forged);
  });

  it('takes its cap from MOAT_SERVER_MAX, at least one', () => {
    expect(maxServers({})).toBe(3);
    expect(maxServers({ MOAT_SERVER_MAX: '5' })).toBe(5);
    expect(maxServers({ MOAT_SERVER_MAX: '0' })).toBe(3);
    expect(maxServers({ MOAT_SERVER_MAX: 'x' })).toBe(3);
  });
});
