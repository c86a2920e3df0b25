import { spawn } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { isMoatError, type MoatError } from '../../src/errors.js';
import type { Moat } from '../../src/index.js';
import { workspaceVolume } from '../../src/service/task-container.js';
import { captureIO, gitIn, MOAT_COMMAND, Scratch } from '../helpers/fixtures.js';

/**
 * A loopback TCP proxy in front of the remote engine, made by the test: moat talks to the engine
 * only through it, and the test cuts it mid-transfer. Each connection's bytes from the engine are
 * counted, so the one carrying a bundle home is found by its size.
 */
class CuttableProxy {
  private server?: Server;
  private readonly pairs = new Set<{ client: Socket; engine: Socket; fromEngine: number }>();
  /** Once a connection has carried this many bytes from the engine, `onBig` decides what happens. */
  private trigger?: { bytes: number; act: (pair: { client: Socket; engine: Socket }) => void };
  port = 0;
  /** How many times a trigger fired. */
  cuts = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async listen(port = 0): Promise<number> {
    this.server = createServer((client) => {
      const engine = connect(this.target.port, this.target.host);
      const pair = { client, engine, fromEngine: 0 };
      this.pairs.add(pair);
      // Both ways with backpressure: a fast engine must not have its bytes dropped by the proxy.
      client.pipe(engine);
      engine.on('data', (chunk: Buffer) => {
        pair.fromEngine += chunk.length;
        const trigger = this.trigger;
        if (trigger && pair.fromEngine >= trigger.bytes) {
          this.trigger = undefined;
          this.cuts += 1;
          trigger.act(pair);
          return;
        }
        if (!client.write(chunk)) {
          engine.pause();
          client.once('drain', () => engine.resume());
        }
      });
      engine.on('end', () => client.end());
      const broken = () => {
        client.destroy();
        engine.destroy();
      };
      client.on('error', broken);
      engine.on('error', broken);
      client.on('close', () => {
        engine.destroy();
        this.pairs.delete(pair);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server!.address() as { port: number }).port;
    return this.port;
  }

  /** The next connection that carries `bytes` from the engine is cut there (both sides reset). */
  cutStreamAt(bytes: number): void {
    this.trigger = { bytes, act: ({ client, engine }) => (client.resetAndDestroy(), engine.resetAndDestroy()) };
  }

  /** At `bytes` of one connection, the whole engine goes away: every connection reset, nothing listens any more. */
  dieAt(bytes: number): Promise<void> {
    return new Promise((resolve) => {
      this.trigger = {
        bytes,
        act: () => {
          void this.stop().then(resolve);
        },
      };
    });
  }

  async stop(): Promise<void> {
    for (const { client, engine } of this.pairs) {
      client.resetAndDestroy();
      engine.resetAndDestroy();
    }
    this.pairs.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }
}

/** What moat's CLI would print for the error: one line, a hint, a documented exit code. */
function expectOneLine(error: unknown, codes: string[]): MoatError {
  expect(isMoatError(error), String(error)).toBe(true);
  const moatError = error as MoatError;
  expect(codes).toContain(moatError.code);
  expect(moatError.message).not.toContain('\n');
  expect(moatError.hint).toBeTruthy();
  // docs: 4 the engine failed or could not be reached, 5 a git step failed.
  expect([4, 5]).toContain(moatError.exitCode);
  return moatError;
}

/**
 * Faults of an engine reached over the network (issue 13): the exec stream that carries a task's
 * commits home is cut mid-bundle, or the whole engine goes away mid-sync. Each gives one line
 * with a hint and a documented exit code; the commit made before is on moat/<task> afterwards
 * (with the next sync), and `moat gc` then `rm` leave nothing labelled on the engine.
 */
describe('a remote engine that fails mid-sync', () => {
  const scratch = new Scratch();
  let docker: Docker;
  let proxy: CuttableProxy;
  let moat: Moat;
  const bigCommit = [
    'sh',
    '-c',
    'head -c 24000000 /dev/urandom > big.bin && git add big.bin && git -c user.name=a -c user.email=a@a.invalid commit -qm big && echo done',
  ];

  beforeAll(async () => {
    const endpoint = await findEngine();
    expect(endpoint.transport, 'DOCKER_HOST must name a remote (tcp://) engine').toBe('tcp');
    docker = new Docker(connectionOptions(endpoint) as Docker.DockerOptions);
    const url = new URL(process.env.DOCKER_HOST!);
    proxy = new CuttableProxy({ host: url.hostname, port: Number(url.port) });
    await proxy.listen();
    moat = scratch.moat({ env: { DOCKER_HOST: `tcp://127.0.0.1:${proxy.port}`, MOAT_POOL: 'off' } });
  });
  afterAll(async () => {
    await proxy.stop();
    await scratch.cleanup();
  });

  async function leftOver(): Promise<string[]> {
    const filters = { label: [`moat.home=${moat.context.store.homeKey}`] };
    const containers = await docker.listContainers({ all: true, filters });
    const volumes = (await docker.listVolumes({ filters })).Volumes ?? [];
    return [...containers.map((c) => c.Names[0]!.replace(/^\//, '')), ...volumes.map((v) => v.Name)];
  }

  it('the exec stream cut mid-bundle: one line, and the commit comes home with the next sync', async () => {
    const task = await moat.up({ task: 'cut', network: 'none' });
    const made = captureIO();
    expect((await moat.exec('cut', bigCommit, made.io, { sync: false })).exitCode).toBe(0);
    proxy.cutStreamAt(4 * 1024 * 1024);
    const first = await moat.sync('cut').then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    expect(proxy.cuts).toBe(1);
    // Seen here: the read fails and a fresh helper reads the workspace again, so the first sync already
    // brings the commit home; an engine slower to report the cut exec gives one line instead.
    if ('error' in first) expectOneLine(first.error, ['E_ENGINE_FAILED', 'E_ENGINE_UNREACHABLE', 'E_SYNC_FAILED']);
    // Never a half-imported commit: the branch is at the base or at the whole commit.
    const tipAfterCut = gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/cut');
    expect(['initial', 'big']).toContain(tipAfterCut);
    const second = await moat.sync('cut');
    expect(second.commits).toBe(1);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/cut')).toBe('big');
    expect(gitIn(scratch.repo, 'cat-file', '-s', 'moat/cut:big.bin')).toBe('24000000');
    // What the cut left (a helper container, say) goes with gc; the task's own stay.
    await moat.gc();
    const own = [(await docker.getContainer(task.containerId!).inspect()).Name.replace(/^\//, ''), workspaceVolume(task)];
    expect((await leftOver()).sort()).toEqual(own.sort());
    await moat.rm('cut', { force: true });
    expect(await leftOver()).toEqual([]);
  });

  it('the engine gone mid-sync: E_ENGINE_UNREACHABLE (exit 4) with a hint; back, the next sync brings the commit home', async () => {
    await moat.up({ task: 'gone', network: 'none' });
    const before = captureIO();
    expect(
      (await moat.exec('gone', ['sh', '-c', 'echo a > a.txt && git add a.txt && git -c user.name=a -c user.email=a@a.invalid commit -qm before'], before.io))
        .exitCode,
    ).toBe(0);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/gone')).toBe('before');
    expect((await moat.exec('gone', bigCommit, captureIO().io, { sync: false })).exitCode).toBe(0);
    const died = proxy.dieAt(4 * 1024 * 1024);
    const error = await moat.sync('gone').then(
      () => undefined,
      (e: unknown) => e,
    );
    await died;
    const moatError = expectOneLine(error, ['E_ENGINE_UNREACHABLE']);
    expect(moatError.exitCode).toBe(4);
    // The commit synced before the fault is still there.
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/gone')).toBe('before');
    // While the engine is away, gc says so the same way and changes nothing.
    expectOneLine(
      await moat.gc().then(
        () => undefined,
        (e: unknown) => e,
      ),
      ['E_ENGINE_UNREACHABLE'],
    );
    await proxy.listen(proxy.port);
    const result = await moat.sync('gone');
    expect(result.commits).toBe(2);
    expect(gitIn(scratch.repo, 'log', '--format=%s', 'moat/gone')).toBe('big\nbefore\ninitial');
    await moat.gc();
    await moat.rm('gone', { force: true });
    expect(await leftOver()).toEqual([]);
  });
  it('kill -9 of moat while it seeds the workspace volume: gc removes the half-copied volume, the container and the record', async () => {
    // The real engine, not the proxy: moat itself dies here.
    const env = scratch.env({ DOCKER_HOST: process.env.DOCKER_HOST!, MOAT_POOL: 'off', MOAT_TEST_KILL_AT: 'seed-mid-bundle' });
    const child = spawn(MOAT_COMMAND, ['up', '--task', 'halfway', '--network', 'none'], { cwd: scratch.repo, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    expect(signal, stderr).toBe('SIGKILL');
    const record = (await moat.context.store.listAll()).find((r) => r.name === 'halfway')!;
    expect(record).toMatchObject({ state: 'creating', workspace: 'volume' });
    expect(await leftOver()).toContain(workspaceVolume(record));
    const result = await moat.gc();
    expect(result.removedTasks).toEqual(['halfway']);
    expect(await leftOver()).toEqual([]);
    expect(gitIn(scratch.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/halfway')).toBe('');
    // The name is free again, and the next up makes a whole workspace.
    await moat.up({ task: 'halfway', network: 'none' });
    const cap = captureIO();
    expect((await moat.exec('halfway', ['git', 'log', '--format=%s'], cap.io, { sync: false })).exitCode).toBe(0);
    expect(cap.out().trim()).toBe('initial');
    await moat.rm('halfway', { force: true });
    expect(await leftOver()).toEqual([]);
  });
});
