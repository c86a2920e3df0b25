import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { forPodman, PodmanClient, PodmanEngine, tmpfsForPodman } from '../../src/engine/podman-engine.js';
import { openEngine } from '../../src/engine/open-engine.js';
import { enforcementText } from '../../src/domain/limit-enforcement.js';
import { effectiveConfig } from '../../src/config/effective.js';
import { sandboxSpec } from '../../src/domain/sandbox-spec.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';

describe("Podman's dialect of the create options", () => {
  const options = {
    Image: 'moat-base:bookworm',
    User: '1000:1000',
    Cmd: ['sleep', 'infinity'],
    Labels: { 'moat.task': 't' },
    HostConfig: {
      Ulimits: [{ Name: 'nofile', Soft: 4096, Hard: 4096 }],
      Tmpfs: { '/tmp': 'rw,exec,size=1m,mode=1777', '/home/agent': 'rw,exec,size=1m,uid=1000,gid=1000,mode=0700' },
    },
  };

  it('runs with runc, an explicit nproc, and tmpfs owned through U', () => {
    const out = forPodman(options, false);
    expect(out.HostConfig!.Runtime).toBe('runc');
    expect(out.HostConfig!.Ulimits).toEqual([
      { Name: 'nofile', Soft: 4096, Hard: 4096 },
      { Name: 'nproc', Soft: expect.any(Number), Hard: expect.any(Number) },
    ]);
    expect(out.HostConfig!.Tmpfs).toEqual({ '/tmp': 'rw,exec,size=1m,mode=1777', '/home/agent': 'rw,exec,size=1m,mode=0700,U' });
    expect(out.HostConfig!.UsernsMode).toBeUndefined();
    expect(out.Cmd).toEqual(['sleep', 'infinity']);
  });

  it('rootless: keep-id, and the main process under prlimit with the nofile limit', () => {
    const out = forPodman(options, true);
    expect(out.HostConfig!.UsernsMode).toBe('keep-id');
    expect(out.Cmd).toEqual(['/usr/bin/prlimit', '--nofile=4096:4096', '--', 'sleep', 'infinity']);
    expect(out.Labels).toMatchObject({ 'moat.task': 't', 'moat.nofile': '4096' });
  });

  it("a tmpfs owned by someone other than the container's user keeps its options (and Podman refuses them)", () => {
    expect(tmpfsForPodman({ '/x': 'size=1m,uid=5,gid=5' }, '1000:1000')).toEqual({ '/x': 'size=1m,uid=5,gid=5' });
  });
});

describe('limits the engine cannot enforce', () => {
  it('are said NOT enforced, the others enforced', () => {
    expect(enforcementText(['memory'], 'why')).toEqual({ memory: 'NOT enforced (why)', cpus: 'enforced', pids: 'enforced' });
    expect(enforcementText(undefined)).toEqual({ memory: 'enforced', cpus: 'enforced', pids: 'enforced' });
  });

  it('a repository cannot accept the gap, nor choose the engine', () => {
    expect(() => effectiveConfig({}, { acceptUnenforcedLimits: ['memory'] })).toThrow(/acceptUnenforcedLimits/);
    expect(() => effectiveConfig({}, { engine: 'podman' })).toThrow(/engine/);
  });
});

describe('openEngine', () => {
  it('refuses an unknown engine name with a usage error', async () => {
    await expect(openEngine({ MOAT_ENGINE: 'lxc' })).rejects.toMatchObject({ code: 'E_USAGE' });
  });

  it("the user's config chooses Podman; an explicit socket that is absent is one clear error", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moat-open-engine-'));
    writeFileSync(join(dir, 'config.yaml'), 'engine: podman\n');
    await expect(openEngine({ MOAT_CONFIG: join(dir, 'config.yaml'), MOAT_ENGINE_SOCKET: join(dir, 'none.sock') })).rejects.toMatchObject({
      code: 'E_ENGINE_UNREACHABLE',
      message: expect.stringContaining('none.sock'),
    });
  });
});

describe("whether the Podman service is rootless, without libpod's /info (seconds on this machine kind)", () => {
  it("a local service's socket owner says it; /info is not asked", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moat-podman-sock-'));
    const socketPath = join(dir, 'podman.sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const client = new PodmanClient({ socketPath });
      client.localSocket = socketPath;
      client.host = () => Promise.reject(new Error('libpod /info was asked'));
      chownSync(socketPath, 0, 0);
      expect(await client.rootless()).toBe(false);
      chownSync(socketPath, 1000, 1000);
      expect(await client.rootless()).toBe(true);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('isolation: gvisor on Podman', () => {
  it('is refused before anything is made (Podman runs runc: a gVisor task would silently get the host kernel)', async () => {
    const engine = new PodmanEngine({ kind: 'podman', transport: 'unix', socketPath: '/nonexistent/podman.sock', source: 'test' });
    const spec = sandboxSpec({
      containerName: 'moat-test-gvisor-on-podman',
      taskName: 't',
      image: 'moat-base:bookworm',
      workspace: { kind: 'host', path: '/nonexistent' },
      uid: 1000,
      gid: 1000,
      limits: DEFAULT_LIMITS,
      env: {},
      labels: {},
      gvisorRuntime: 'runsc',
    });
    await expect(engine.createContainer(spec)).rejects.toMatchObject({ code: 'E_ISOLATION_UNAVAILABLE' });
  });
});
