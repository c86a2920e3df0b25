import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { captureIO, gitIn, remoteEngine, Scratch } from '../helpers/fixtures.js';

describe('time limit, stats and push', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('a task past its time limit is stopped, says why in ls, and its commits still come home', async () => {
    scratch.writeConfig('limits:\n  timeout: 3s\n');
    const moat = scratch.moat();
    await moat.up({ task: 'timed' });
    await moat.exec('timed', ['sh', '-c', 'echo t > t && git add t && git commit -qm before-timeout'], captureIO().io, { sync: false });
    const started = Date.now();
    // A command that would run for a minute is cut at the limit, with the whole container.
    const result = await moat.exec('timed', ['sleep', '60'], captureIO().io, { sync: false });
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(result.exitCode).not.toBe(0);
    let row = (await moat.ls())[0]!;
    for (let i = 0; i < 50 && row.state === 'running'; i += 1) {
      await new Promise((r) => setTimeout(r, 100));
      row = (await moat.ls())[0]!;
    }
    expect(row.state).toBe('exited');
    expect(row.stopReason).toMatch(/^time limit/);
    const sync = await moat.sync('timed');
    expect(sync.commits).toBe(1);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/timed')).toBe('before-timeout');
  });

  it('a repository cannot lift the time limit', async () => {
    const { effectiveConfig } = await import('../../src/config/effective.js');
    expect(() => effectiveConfig({ limits: { timeout: '1h' } }, { limits: { timeout: 0 } })).toThrow(/limits.timeout/);
    expect(effectiveConfig({ limits: { timeout: '1h' } }, { limits: { timeout: '10m' } }).limits.timeoutSeconds).toBe(600);
  });

  it('stats reports memory, pids and workspace disk of a running task', async () => {
    scratch.writeConfig('');
    const moat = scratch.moat();
    await moat.up({ task: 'stat' });
    await moat.exec('stat', ['sh', '-c', 'head -c 3000000 /dev/urandom > blob.bin'], captureIO().io, { sync: false });
    const [stats] = await moat.stats('stat');
    expect(stats!.running).toBe(true);
    expect(stats!.container!.pids).toBeGreaterThan(0);
    expect(stats!.container!.memoryLimitBytes).toBe(2 * 1024 ** 3);
    expect(stats!.workspaceBytes).toBeGreaterThan(3_000_000);
  });

  it("push sends the task branch to the user's remote with the user's credentials", async () => {
    const moat = scratch.moat();
    const remote = `${scratch.root}/remote.git`;
    gitIn(scratch.root, 'init', '-q', '--bare', remote);
    gitIn(scratch.repo, 'remote', 'add', 'origin', remote);
    await moat.up({ task: 'pushme' });
    await moat.exec('pushme', ['sh', '-c', 'echo p > p && git add p && git commit -qm pushed-commit'], captureIO().io);
    const result = await moat.push('pushme');
    expect(result.branch).toBe('moat/pushme');
    expect(gitIn(remote, 'log', '-1', '--format=%s', 'moat/pushme')).toBe('pushed-commit');
    await expect(moat.push('pushme', { remote: 'nowhere' })).rejects.toMatchObject({ code: 'E_GIT_REF' });
  });
});

describe('disk cap', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('writing past the cap fails with ENOSPC inside, the host loses no more than the cap, earlier commits stay', async () => {
    const { loopMountAvailable } = await import('../../src/workspace/task-volume.js');
    scratch.writeConfig('limits:\n  disk: 64m\n');
    const moat = scratch.moat();
    const record = await moat.up({ task: 'filler' });
    if (await remoteEngine()) {
      // An engine that does not share this host caps the workspace only where it has loop devices
      // (docker-disk.ts); where it cannot, moat must say so, not pretend.
      if (record.disk === 'none') {
        const [row] = await moat.ls();
        expect(row!.disk).toMatch(/^NOT capped: /);
        expect(row!.limits.diskBytes).toBeUndefined();
        await moat.rm('filler', { force: true });
        return;
      }
      expect(record.disk).toBe('engine');
    } else {
      // On this host: a loop mount of moat's own as root, else one the engine makes (a docker-group user).
      expect(record.disk).toBe((await loopMountAvailable()) ? 'loop' : 'engine');
    }
    await moat.exec('filler', ['sh', '-c', 'echo keep > keep.txt && git add keep.txt && git commit -qm kept'], captureIO().io);
    const { statfsSync } = await import('node:fs');
    const free = () => {
      const s = statfsSync(scratch.root);
      return s.bavail * s.bsize;
    };
    const before = free();
    const cap = captureIO();
    const result = await moat.exec('filler', ['sh', '-c', 'dd if=/dev/urandom of=fill.bin bs=1M count=200 2>&1; df -k /workspace | tail -1'], cap.io, {
      sync: false,
    });
    expect(cap.out()).toMatch(/No space left on device/);
    expect(result.exitCode).toBe(0);
    expect(before - free()).toBeLessThan(64 * 1024 * 1024 + 8 * 1024 * 1024);
    const [stats] = await moat.stats('filler');
    expect(stats!.diskCapBytes).toBe(64 * 1024 * 1024);
    await moat.exec('filler', ['rm', '-f', 'fill.bin'], captureIO().io, { sync: false });
    expect((await moat.sync('filler')).commits).toBe(1);
    await moat.rm('filler', { force: true });
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(scratch.root);
  });
});

describe('idle limit', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('a task with nothing running is stopped at its idle limit; a running command keeps it alive', async () => {
    scratch.writeConfig('limits:\n  idle: 6s\n');
    const moat = scratch.moat();
    await moat.up({ task: 'idler' });
    // Busy for longer than the limit: still running afterwards.
    const busy = await moat.exec('idler', ['sh', '-c', 'sleep 9; echo still-here'], captureIO().io, { sync: false });
    expect(busy.exitCode).toBe(0);
    expect((await moat.ls())[0]!.state).toBe('running');
    // Then idle: stopped within the limit plus one check.
    let row = (await moat.ls())[0]!;
    for (let i = 0; i < 40 && row.state === 'running'; i += 1) {
      await new Promise((r) => setTimeout(r, 500));
      row = (await moat.ls())[0]!;
    }
    expect(row.state).toBe('exited');
    expect(row.stopReason).toBe('idle limit');
  }, 60_000);
});

describe('read-only mounts (package caches)', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('a granted folder is visible read-only; credential folders are refused', async () => {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const cache = `${scratch.root}/pip-cache`;
    mkdirSync(cache);
    writeFileSync(`${cache}/pkg.whl`, 'wheel');
    scratch.writeConfig(`mounts:\n  - { source: ${cache}, target: /home/agent/.cache/pip }\n`);
    const moat = scratch.moat();
    if (await remoteEngine()) {
      // A host folder cannot reach a sandbox on an engine that does not share this host: refused, nothing made.
      await expect(moat.up({ task: 'cache' })).rejects.toMatchObject({ code: 'E_USAGE', exitCode: 2 });
      expect(await moat.ls()).toEqual([]);
      return;
    }
    await moat.up({ task: 'cache' });
    const cap = captureIO();
    await moat.exec('cache', ['sh', '-c', 'cat ~/.cache/pip/pkg.whl; echo; touch ~/.cache/pip/x 2>&1 | grep -c "Read-only"'], cap.io, { sync: false });
    expect(cap.out().trim().split('\n')).toEqual(['wheel', '1']);
    const { checkMounts } = await import('../../src/service/mounts.js');
    mkdirSync(`${scratch.root}/fakehome/.ssh`, { recursive: true });
    await expect(
      checkMounts([{ source: `${scratch.root}/fakehome/.ssh`, target: '/home/agent/x' }], scratch.root, `${scratch.root}/fakehome`),
    ).rejects.toMatchObject({ message: expect.stringContaining('credentials') });
    await expect(
      checkMounts([{ source: `${scratch.root}/fakehome`, target: '/home/agent/x' }], scratch.root, `${scratch.root}/fakehome`),
    ).rejects.toMatchObject({ message: expect.stringContaining('too broad') });
    await expect(checkMounts([{ source: '/etc', target: '/opt/etc' }], scratch.root)).rejects.toMatchObject({ code: 'E_CONFIG_INVALID' });
  });
});
