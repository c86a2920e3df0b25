import { statSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine } from '../../src/engine/open-engine.js';
import { PodmanEngine } from '../../src/engine/podman-engine.js';
import { captureIO, gitIn, inspect, Scratch } from '../helpers/fixtures.js';

/**
 * Rootless Podman as an ordinary user (.ci/run's podman phase runs this as the user moatci, with
 * MOAT_ENGINE=podman and that user's own API socket). On cgroup v1 the kernel cannot hold a rootless
 * container to any cgroup limit: moat must refuse, or say NOT enforced once the user accepted it.
 */
describe('rootless Podman', () => {
  const scratch = new Scratch();
  let gap: string[] = [];

  beforeAll(async () => {
    expect(process.getuid?.()).not.toBe(0);
    const engine = await openEngine(scratch.env());
    expect(engine).toBeInstanceOf(PodmanEngine);
    const info = await engine.info();
    expect(info.rootless).toBe(true);
    gap = (await engine.limitEnforcement!()).unenforced;
  });
  afterAll(() => scratch.cleanup());

  it('up refuses a limit the kernel cannot enforce here (E_LIMITS_UNENFORCED, exit 3), and makes nothing', async () => {
    // This machine kind (cgroup v1): no controller is delegated, so every cgroup limit is a gap.
    expect(gap).toEqual(['memory', 'cpus', 'pids']);
    scratch.writeConfig('acceptUnenforcedLimits: [memory]\n');
    const moat = scratch.moat();
    const error = await moat.up({ task: 'refused' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_LIMITS_UNENFORCED', exitCode: 3 });
    expect((error as Error).message).toMatch(/cpus, pids limits cannot be enforced here/);
    expect((error as { hint: string }).hint).toContain('acceptUnenforcedLimits: [memory, cpus, pids]');
    expect(await moat.ls()).toEqual([]);
    expect(gitIn(scratch.repo, 'branch', '--list', 'moat/refused')).toBe('');
  });

  it('a repository cannot accept the gap for the user', async () => {
    const { effectiveConfig } = await import('../../src/config/effective.js');
    expect(() => effectiveConfig({}, { acceptUnenforcedLimits: ['memory', 'cpus', 'pids'] })).toThrow(/acceptUnenforcedLimits/);
  });

  describe('with the gap accepted in the user config', () => {
    const name = 'gap';
    beforeAll(() => scratch.writeConfig('acceptUnenforcedLimits: [memory, cpus, pids]\n'));

    it('the task runs as the user and its commits come home, its files owned by the user', async () => {
      const moat = scratch.moat();
      const record = await moat.up({ task: name });
      const cap = captureIO();
      const result = await moat.exec(name, ['sh', '-c', 'id -u; echo rootless > r.txt && git add r.txt && git commit -qm rootless-commit'], cap.io);
      expect(result.exitCode).toBe(0);
      expect(Number(cap.out().trim().split('\n')[0])).toBe(process.getuid!());
      expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', `moat/${name}`)).toBe('rootless-commit');
      expect(gitIn(scratch.repo, 'show', `moat/${name}:r.txt`)).toBe('rootless');
      // keep-id: what the sandbox wrote on this host is the user's own, not a subordinate id's.
      const file = join(scratch.home, 'repos', record.repoKey, 'tasks', name, 'volume', 'workspace', 'r.txt');
      expect(statSync(file).uid).toBe(userInfo().uid);
    });

    it('ls, stats and doctor say NOT enforced for each accepted limit, and the gap is real', async () => {
      const moat = scratch.moat();
      const [row] = await moat.ls();
      expect(row!.limitEnforcement).toEqual({
        memory: expect.stringMatching(/^NOT enforced/),
        cpus: expect.stringMatching(/^NOT enforced/),
        pids: expect.stringMatching(/^NOT enforced/),
      });
      const [stats] = await moat.stats(name);
      expect(stats!.limitEnforcement.memory).toMatch(/^NOT enforced/);
      const report = await moat.doctor();
      expect(report.enforcement.memory).toMatch(/^NOT enforced/);
      expect(report.enforcement.pids).toMatch(/^NOT enforced/);
      expect(report.checks.find((c) => c.name === 'limits')).toMatchObject({ status: 'warn' });
      // Every engine configuration of the machine is listed; this user's own service with what it does not hold.
      expect(report.engines.map((e) => e.name)).toEqual(['docker+runc', 'docker+gvisor', 'podman rootful', 'podman rootless']);
      const own = report.engines.find((e) => e.name === 'podman rootless')!;
      expect(own).toMatchObject({ status: 'warn', detail: expect.stringMatching(/\(rootless\)$/) });
      expect(own.enforces).toMatchObject({ memory: expect.stringMatching(/^NOT enforced/), disk: expect.stringMatching(/NOT capped/) });
      expect(own.enforces.logs).toMatch(/^one file of 10MiB/);
      expect(report.caps.find((c) => c.name === 'container logs')?.cap).toMatch(/^one file of 10MiB/);
      // What moat says is what holds: the engine did not give the container the 2g limit.
      const info = await inspect(row!.containerId!);
      const cap = captureIO();
      await moat.exec(name, ['sh', '-c', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'], cap.io, {
        sync: false,
      });
      expect(cap.out().trim()).not.toBe(String(2 * 1024 ** 3));
      expect(info.Id).toBe(row!.containerId);
    });

    it('what can be held still is: open files, /tmp size, read-only root, no capabilities', async () => {
      const moat = scratch.moat();
      const cap = captureIO();
      await moat.exec(
        name,
        ['sh', '-c', 'ulimit -n; df -k /tmp | tail -1; touch /etc/x 2>/dev/null && echo rw || echo ro; grep CapEff /proc/self/status'],
        cap.io,
        { sync: false },
      );
      const [nofile, tmp, root, caps] = cap.out().trim().split('\n');
      expect(nofile).toBe('4096');
      expect(Number(tmp!.split(/\s+/)[1])).toBe(512 * 1024);
      expect(root).toBe('ro');
      expect(caps).toMatch(/CapEff:\s+0000000000000000/);
    });
  });
});
