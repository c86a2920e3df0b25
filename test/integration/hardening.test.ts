import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat, TaskRecord } from '../../src/index.js';
import { captureIO, engineKind, inspect, libpodInspect, PODMAN_DEFAULT_CAPS, remoteEngine, Scratch } from '../helpers/fixtures.js';

/** What the engine reports about a task's container, and what the sandbox sees from inside. */
describe('a task container is hardened by default', () => {
  const scratch = new Scratch();
  let moat: Moat;
  let record: TaskRecord;
  let info: Awaited<ReturnType<typeof inspect>>;
  let podman = false;

  beforeAll(async () => {
    scratch.writeConfig('env:\n  GRANTED: yes-please\n');
    moat = scratch.moat({ env: { HOST_SECRET_TOKEN: 'host-secret-value-123' } });
    record = await moat.up({ task: 'hard' });
    info = await inspect(record.containerId!);
    podman = (await engineKind()) === 'podman';
  });
  afterAll(() => scratch.cleanup());

  async function inside(script: string): Promise<{ code: number; out: string; err: string }> {
    const cap = captureIO();
    const result = await moat.exec('hard', ['sh', '-c', script], cap.io, { sync: false });
    return { code: result.exitCode, out: cap.out(), err: cap.err() };
  }

  it('engine: non-root, no capabilities, no new privileges, init, read-only root, no network', () => {
    expect(info.Config.User).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    // Podman reports ALL as the capabilities it dropped, one by one: every one it would have granted.
    if (podman) expect(info.HostConfig.CapDrop).toEqual(expect.arrayContaining(PODMAN_DEFAULT_CAPS));
    else expect(info.HostConfig.CapDrop).toEqual(['ALL']);
    expect(info.HostConfig.CapAdd ?? []).toEqual([]);
    expect(info.HostConfig.Privileged).toBe(false);
    // Podman writes the option without its value.
    expect(info.HostConfig.SecurityOpt).toContain(podman ? 'no-new-privileges' : 'no-new-privileges:true');
    expect((info.HostConfig.SecurityOpt ?? []).some((opt) => opt.includes('unconfined'))).toBe(false);
    expect(info.HostConfig.Init).toBe(true);
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.HostConfig.NetworkMode).toBe('none');
    expect(Object.keys(info.NetworkSettings.Networks ?? {}).filter((name) => name !== 'none')).toEqual([]);
    // Podman's compatible inspect does not echo NetworkDisabled back; NetworkMode none above is its word for it.
    if (!podman) expect(info.Config.NetworkDisabled).toBe(true);
  });

  it('engine: limits on memory (swap included), CPU, pids, open files, logs', async () => {
    expect(info.HostConfig.Memory).toBe(2 * 1024 ** 3);
    expect(info.HostConfig.MemorySwap).toBe(info.HostConfig.Memory);
    expect(info.HostConfig.NanoCpus).toBe(2e9);
    expect(info.HostConfig.PidsLimit).toBe(512);
    if (podman) {
      // Podman spells rlimits RLIMIT_*, and moat gives it nproc explicitly (engine/podman-engine.ts); its log cap is in libpod's inspect.
      expect(info.HostConfig.Ulimits).toEqual([
        { Name: 'RLIMIT_NOFILE', Soft: 4096, Hard: 4096 },
        { Name: 'RLIMIT_NPROC', Soft: expect.any(Number), Hard: expect.any(Number) },
      ]);
      expect((await libpodInspect(record.containerId!)).HostConfig.LogConfig.Size).toBe('10.49MB');
      return;
    }
    expect(info.HostConfig.Ulimits).toEqual([{ Name: 'nofile', Soft: 4096, Hard: 4096 }]);
    expect(info.HostConfig.LogConfig?.Config?.['max-size']).toBeTruthy();
  });

  it('engine: the only host path is the task workspace, never the docker socket', async () => {
    const mounts = info.Mounts.filter((m) => m.Type === 'bind' || m.Type === 'volume');
    expect(mounts).toHaveLength(1);
    expect(mounts[0]!.Destination).toBe('/workspace');
    if ((await remoteEngine()) || record.workspace === 'volume') {
      // An engine that does not share this host, or one that caps the workspace for a user who is
      // not root (docker-disk.ts): no host path at all, the workspace is the engine's own volume.
      expect(mounts[0]!.Type).toBe('volume');
      expect(JSON.stringify(info)).not.toContain(scratch.root);
    } else expect(mounts[0]!.Source).toBe(join(scratch.home, 'repos', record.repoKey, 'tasks', 'hard', 'volume', 'workspace'));
    expect(JSON.stringify(info.Mounts)).not.toContain('docker.sock');
    expect(mounts[0]!.Source.startsWith(scratch.repo)).toBe(false);
  });

  it('engine: every resource is labelled', () => {
    expect(info.Config.Labels).toMatchObject({
      'moat.task': 'hard',
      'moat.repo': record.repoKey,
      'moat.version': expect.any(String),
      'moat.home': moat.context.store.homeKey,
    });
  });

  it("environment is exactly what config grants plus moat's own variables", async () => {
    // Podman adds its own three (container=podman, TERM, HOSTNAME): none carries a value of the host's.
    const own = podman ? ['HOSTNAME', 'TERM', 'container'] : [];
    const env = info.Config.Env.map((e) => e.split('=')[0]!)
      .filter((name) => !own.includes(name))
      .sort();
    if (podman) expect(info.Config.Env.filter((e) => own.includes(e.split('=')[0]!)).sort()).toEqual(['HOSTNAME=moat-hard', 'TERM=xterm', 'container=podman']);
    expect(env).toEqual(['GRANTED', 'HOME', 'LANG', 'LOGNAME', 'MOAT_SANDBOX', 'MOAT_TASK', 'PATH', 'USER'].sort());
    const { out } = await inside('cat /proc/1/environ | tr "\\0" "\\n"; env');
    expect(out).not.toContain('host-secret-value-123');
    expect(out).toContain('GRANTED=yes-please');
  });

  it('inside: uid is not 0, capabilities are empty, no_new_privs and seccomp are on', async () => {
    const { out } = await inside('id -u; grep -E "^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status');
    const lines = out.trim().split('\n');
    expect(Number(lines[0])).toBeGreaterThan(0);
    expect(out).toMatch(/CapEff:\s+0000000000000000/);
    expect(out).toMatch(/CapBnd:\s+0000000000000000/);
    expect(out).toMatch(/NoNewPrivs:\s+1/);
    expect(out).toMatch(/Seccomp:\s+2/);
  });

  it('inside: no setuid escape and no sudo', async () => {
    const { out } = await inside('command -v sudo su 2>/dev/null; find / -xdev -perm /6000 -type f 2>/dev/null | head; echo done');
    expect(out.trim()).toBe('done');
  });

  it('inside: root filesystem is read-only; /workspace, /tmp and home are writable', async () => {
    const { out } = await inside(
      'for d in /etc /usr /workspace /tmp "$HOME"; do if touch "$d/.probe" 2>/dev/null; then echo "$d rw"; rm -f "$d/.probe"; else echo "$d ro"; fi; done',
    );
    expect(out.trim().split('\n')).toEqual(['/etc ro', '/usr ro', '/workspace rw', '/tmp rw', '/home/agent rw']);
  });

  it('inside: no network interface but loopback, no docker socket', async () => {
    const { out } = await inside('tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "; ls /var/run/docker.sock /run/docker.sock 2>&1 | grep -c "No such"');
    expect(out.trim().split('\n')).toEqual(['lo', '2']);
  });

  it('files the agent writes in the workspace belong to the invoking user (or the sandbox uid when moat runs as root)', async () => {
    await inside('echo hi > /workspace/owned.txt');
    if ((await remoteEngine()) || record.workspace === 'volume') {
      // In an engine volume: the sandbox user's, as the engine sees it.
      expect((await inside('stat -c %u /workspace/owned.txt')).out.trim()).toBe(String(record.user.uid));
      return;
    }
    const owner = statSync(join(scratch.home, 'repos', record.repoKey, 'tasks', 'hard', 'volume', 'workspace', 'owned.txt')).uid;
    const expected = process.getuid!() === 0 ? 1000 : process.getuid!();
    expect(owner).toBe(expected);
  });

  it("the user's checkout and its uncommitted changes are untouched", async () => {
    writeFileSync(join(scratch.repo, 'README.md'), 'local edit\n');
    await inside('echo agent > README.md && git commit -qam agent-edit');
    await moat.sync('hard');
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(join(scratch.repo, 'README.md'), 'utf8')).toBe('local edit\n');
  });
});
