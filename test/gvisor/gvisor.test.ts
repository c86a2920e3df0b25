import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { gvisorHostPids } from '../../src/domain/isolation.js';
import type { Moat } from '../../src/index.js';
import { captureIO, gitIn, MOAT_BIN, Scratch, scratchPool } from '../helpers/fixtures.js';

/**
 * isolation: gvisor against the real engine with runsc registered (scripts/setup-gvisor.sh; .ci/run's
 * gvisor phase). Fails, never skips, where gVisor is not there.
 */
/** An HTTP server on loopback that answers with the path it saw, and records it. */
async function recordingUpstream(): Promise<{ server: Server; port: number; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? '');
    res.end(`upstream saw ${req.url}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port, seen };
}

describe('isolation: gvisor', () => {
  const scratch = new Scratch();
  let moat: Moat;
  let docker: Docker;
  let upstream: Awaited<ReturnType<typeof recordingUpstream>>;

  beforeAll(async () => {
    docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
    upstream = await recordingUpstream();
    scratch.writeConfig('isolation: gvisor\nlimits:\n  pids: 64\negress:\n  allow: [127.0.0.1/32]\n');
    moat = scratch.moat();
  });
  afterAll(async () => {
    upstream.server.close();
    await scratch.cleanup();
  });

  it("runs the task on gVisor's kernel, with room for runsc's threads in the host's pids cgroup", async () => {
    const task = await moat.up({ task: 'g' });
    expect(task.isolation).toBe('gvisor');
    const info = await docker.getContainer(task.containerId!).inspect();
    expect(info.HostConfig.Runtime).toBe('runsc');
    expect(info.HostConfig.PidsLimit).toBe(gvisorHostPids(64));
    expect(info.HostConfig.Ulimits).toContainEqual({ Name: 'nproc', Soft: 64, Hard: 64 });
    expect(info.HostConfig.NetworkMode).toBe('none');
    const cap = captureIO();
    expect((await moat.exec('g', ['sh', '-c', 'dmesg | head -1; uname -r'], cap.io, { sync: false })).exitCode).toBe(0);
    expect(cap.out()).toMatch(/Starting gVisor/);
    const listed = (await moat.ls()).find((t) => t.name === 'g')!;
    expect(listed.isolation).toBe('gvisor');
  });

  it('brings commits home from the host workspace, and passes exit statuses through', async () => {
    const cap = captureIO();
    expect((await moat.exec('g', ['sh', '-c', 'echo g > g.txt && git add g.txt && git commit -qm "under gvisor"'], cap.io)).exitCode).toBe(0);
    expect(gitIn(scratch.repo, 'show', 'moat/g:g.txt')).toBe('g');
    expect((await moat.exec('g', ['sh', '-c', 'exit 7'], captureIO().io, { sync: false })).exitCode).toBe(7);
    expect((await moat.exec('g', ['sh', '-c', 'kill -9 $$'], captureIO().io, { sync: false })).exitCode).toBe(137);
  });

  it('holds limits.pids inside the sandbox: a fork bomb cannot fork past it', async () => {
    const cap = captureIO();
    // 100 sleepers against a limit of 64: the shell is refused a fork before the host cgroup is near its figure.
    const script = 'n=0; for i in $(seq 1 100); do sleep 30 & n=$((n+1)); done; echo started $n';
    const code = await moat.exec('g', ['sh', '-c', script], cap.io, { sync: false });
    expect(code.exitCode).not.toBe(0);
    expect(cap.err()).toMatch(/fork/i);
    expect(cap.out()).not.toMatch(/started 100/);
    const info = await docker.getContainer((await moat.ls()).find((t) => t.name === 'g')!.containerId!).inspect();
    expect(info.State.Running).toBe(true);
    await moat.exec('g', ['sh', '-c', 'pkill sleep; true'], captureIO().io, { sync: false });
  });

  it("reaches the network only through moat's gateway, over the exec bridge: no host socket is mounted", async () => {
    const task = await moat.up({ task: 'net', network: 'allowlist' });
    const info = await docker.getContainer(task.containerId!).inspect();
    const binds = (info.Mounts as Array<{ Type: string; Destination: string }>).filter((m) => m.Type === 'bind').map((m) => m.Destination);
    expect(binds).toEqual(['/workspace']);
    const cap = captureIO();
    const script = `for i in 1 2; do curl --noproxy '' -sS -m 20 http://127.0.0.1:${upstream.port}/g$i || exit 1; done; curl -sS -m 20 -o /dev/null -w '%{http_code}\\n' http://denied.invalid/ ; exit 0`;
    expect((await moat.exec('net', ['sh', '-c', script], cap.io, { sync: false })).exitCode).toBe(0);
    expect(cap.out()).toContain('upstream saw /g2');
    expect(cap.out()).toMatch(/\n403\n?$/);
    expect(upstream.seen).toEqual(['/g1', '/g2']);
    // Without the proxy there is no way out at all.
    const direct = captureIO();
    expect(
      (await moat.exec('net', ['sh', '-c', `curl --noproxy '*' -sS -m 5 http://127.0.0.1:${upstream.port}/direct`], direct.io, { sync: false })).exitCode,
    ).not.toBe(0);
    expect(upstream.seen).not.toContain('/direct');
    const audit = await moat.egress('net');
    expect(audit.some((a) => a.decision === 'denied' && a.host === 'denied.invalid')).toBe(true);
    await moat.rm('net', { force: true });
  });

  it('ends a command with 137 when its gVisor sandbox dies under it (the engine alone would never return)', async () => {
    const task = await moat.up({ task: 'dies' });
    const started = Date.now();
    // Killed once the command runs (it says so), not after a guess at how long an exec takes to start:
    // killed before, the exec would find no running container, and no 137 would be asked of it.
    const cap = captureIO();
    const running = moat.exec('dies', ['sh', '-c', 'echo started; exec sleep 300'], cap.io, { sync: false });
    await new Promise<void>((resolve, reject) => {
      cap.io.stdout.on('data', () => cap.out().includes('started') && resolve());
      running.then(() => reject(new Error(`the command ended before it started: ${cap.err()}`)), reject);
    });
    await docker.getContainer(task.containerId!).kill({ signal: 'SIGKILL' });
    expect((await running).exitCode).toBe(137);
    expect(Date.now() - started).toBeLessThan(60_000);
    await moat.rm('dies', { force: true });
  });
});

describe('isolation: gvisor refusals', () => {
  const pool = scratchPool();
  afterAll(() => pool.cleanup());

  it('refuses with E_ISOLATION_UNAVAILABLE (exit 4, one line, a hint) when the runtime is missing, and makes nothing', async () => {
    const s = pool.scratch();
    s.writeConfig('isolation: gvisor\n');
    const env = s.env({ MOAT_GVISOR_RUNTIME: 'moat-no-such-runtime', MOAT_SERVER: 'off' });
    const result = spawnSync(process.execPath, [MOAT_BIN, 'up', '--task', 'nogv'], { cwd: s.repo, env, encoding: 'utf8', timeout: 120_000 });
    expect(result.status).toBe(4);
    expect(result.stderr).toMatch(/gVisor \(runtime moat-no-such-runtime\) cannot run here/);
    expect(result.stderr).toMatch(/npm run setup/);
    // Nothing half-made: no branch, no task, no container.
    expect(gitIn(s.repo, 'branch', '--list', 'moat/*')).toBe('');
    const moat = s.moat({ env: { MOAT_GVISOR_RUNTIME: 'moat-no-such-runtime' } });
    await expect(moat.up({ task: 'nogv2' })).rejects.toMatchObject({ code: 'E_ISOLATION_UNAVAILABLE', exitCode: 4 });
    expect(await moat.ls()).toEqual([]);
    const docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
    expect(await docker.listContainers({ all: true, filters: { label: [`moat.home=${moat.context.store.homeKey}`] } })).toEqual([]);
  });

  it("lets a repository ask for gvisor, never turn off the user's", async () => {
    const s = pool.scratch();
    writeFileSync(join(s.repo, 'moat.yaml'), 'isolation: runc\n');
    execFileSync('git', ['add', 'moat.yaml'], { cwd: s.repo });
    s.writeConfig('isolation: gvisor\n');
    await expect(s.moat().up({ task: 'weak' })).rejects.toMatchObject({ code: 'E_CONFIG_WIDENS', message: expect.stringContaining('isolation: runc') });
    // MOAT_ISOLATION is the user's too.
    s.writeConfig('');
    await expect(s.moat({ env: { MOAT_ISOLATION: 'gvisor' } }).up({ task: 'weak2' })).rejects.toMatchObject({ code: 'E_CONFIG_WIDENS' });
    // The repository asking for gvisor narrows: the task runs under it.
    writeFileSync(join(s.repo, 'moat.yaml'), 'isolation: gvisor\n');
    const asked = await s.moat({ env: { MOAT_ISOLATION: '' } }).up({ task: 'strong' });
    expect(asked.isolation).toBe('gvisor');
    // A bad value is a usage error, before anything is made.
    const bad = spawnSync(process.execPath, [MOAT_BIN, 'up', '--task', 'bad', '--isolation', 'kata'], { cwd: s.repo, env: s.env(), encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown isolation "kata"/);
  });
});
