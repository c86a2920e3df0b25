import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { KubeConfig, type CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMoatError, type Moat } from '../../src/index.js';
import { captureIO, gitIn } from '../helpers/fixtures.js';
import { clusterFixture, NO_NETWORK_CONFIG } from '../helpers/cluster-fixture.js';
import { ADMIN_KUBECONFIG, type ClusterScratch } from '../helpers/kubernetes.js';

/**
 * The faults of issue 19 on the real cluster (scripts/cluster.sh): each one line with a hint and a
 * documented exit code, the task's commits still at home, `rm` cleaning by label. The API server
 * goes away through a TCP proxy this file makes in front of it (the cluster's own processes are
 * never stopped).
 */

/** A TCP proxy to the API server that can be cut (every connection dropped, nothing accepted) and mended. */
class ApiProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(private readonly target: { host: string; port: number }) {}

  async open(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise((resolve) => server.close(resolve));
  }
}

describe('moat on Kubernetes: faults', () => {
  const cluster = clusterFixture(`${NO_NETWORK_CONFIG}limits:\n  memory: 256m\n  disk: 64m\n`);
  let ns: typeof cluster.ns;
  let scratch: ClusterScratch;
  let moat: Moat;
  let core: CoreV1Api;
  let proxy: ApiProxy;
  let proxied: string;

  beforeAll(async () => {
    ({ ns, scratch, moat } = cluster);
    core = ns.core;
    const kc = new KubeConfig();
    kc.loadFromFile(ADMIN_KUBECONFIG);
    const server = new URL(kc.getCurrentCluster()!.server);
    proxy = new ApiProxy({ host: server.hostname, port: Number(server.port || 443) });
    await proxy.open();
    // The admin kubeconfig with the proxy as the server (same host name: the certificate still fits).
    proxied = join(scratch.root, 'proxied.kubeconfig');
    writeFileSync(proxied, readFileSync(ADMIN_KUBECONFIG, 'utf8').replace(server.origin, `https://${server.hostname}:${proxy.port}`));
  });
  // Before the fixture's removal of the namespace and home (after-hooks run as a stack).
  afterAll(async () => {
    await proxy?.cut();
  });

  it('passes Ctrl-C on to a command that also reads stdin, and ends with it', async () => {
    await moat.up({ task: 'sig' });
    const cap = captureIO();
    const stdin = new PassThrough();
    let interrupt: ((signal: 'INT' | 'TERM') => void) | undefined;
    const io = {
      ...cap.io,
      stdin,
      onInterrupt: (listener: (signal: 'INT' | 'TERM') => void) => {
        interrupt = listener;
        return () => (interrupt = undefined);
      },
    };
    // cat reads the caller's stdin, which stays open: only the signal can end it.
    const running = moat.exec('sig', ['sh', '-c', 'trap "echo interrupted; exit 7" INT; echo ready; cat; echo not-reached'], io, { sync: false });
    stdin.write('some input\n');
    for (let i = 0; i < 300 && !cap.out().includes('ready'); i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(cap.out()).toContain('ready');
    await new Promise((resolve) => setTimeout(resolve, 500));
    interrupt!('INT');
    const result = await Promise.race([running, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 30_000))]);
    stdin.destroy();
    expect(result).not.toBe('hung');
    expect(result).toMatchObject({ exitCode: 7 });
    expect(cap.out()).toBe('ready\nsome input\ninterrupted\n');
    await moat.rm('sig', { force: true });
  });

  it('API server gone mid-exec: one line with a hint, exit code 4, the commits synced before are home', async () => {
    const viaProxy = scratch.moat({ env: { KUBECONFIG: proxied } });
    await viaProxy.up({ task: 'cut' });
    const commit = await viaProxy.exec('cut', ['sh', '-c', 'echo one > one.txt && git add one.txt && git commit -qm "before the cut"'], captureIO().io, {
      sync: true,
    });
    expect(commit.exitCode).toBe(0);
    const cap = captureIO();
    const running = viaProxy.exec('cut', ['sh', '-c', 'echo started; sleep 60'], cap.io, { sync: false });
    for (let i = 0; i < 300 && !cap.out().includes('started'); i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
    await proxy.cut();
    const error = await running.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isMoatError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'E_ENGINE_UNREACHABLE', exitCode: 4 });
    expect((error as Error).message).not.toContain('\n');
    expect((error as { hint?: string }).hint).toMatch(/commits synced before are safe/);
    // While it is away, the next command says so too, in one line, and changes nothing.
    await expect(viaProxy.exec('cut', ['true'], captureIO().io, { sync: false })).rejects.toMatchObject({ code: 'E_ENGINE_UNREACHABLE', exitCode: 4 });
    expect(gitIn(scratch.repo, 'log', '--format=%s', '-1', 'moat/cut')).toBe('before the cut');
    // Back again: the task answers, and rm removes its pod and volume by label.
    await proxy.open();
    expect((await viaProxy.exec('cut', ['cat', 'one.txt'], captureIO().io, { sync: false })).exitCode).toBe(0);
    await viaProxy.rm('cut', { force: true });
    expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=cut' })).items).toEqual([]);
    expect((await core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: 'moat.task=cut' })).items).toEqual([]);
  });

  it('a pod evicted for writing past limits.disk: the command ends, one line says evicted for disk, commits home, rm and gc leave nothing', async () => {
    await moat.up({ task: 'full' });
    const commit = await moat.exec('full', ['sh', '-c', 'echo kept > kept.txt && git add kept.txt && git commit -qm "before the flood"'], captureIO().io, {
      sync: true,
    });
    expect(commit.exitCode).toBe(0);
    // Home already, not left for a later read (the next command evicts the pod: nothing is left to read).
    expect(commit.sync?.warning).toBeUndefined();
    expect(gitIn(scratch.repo, 'log', '--format=%s', '-1', 'moat/full')).toBe('before the flood');
    // Past the 64 MiB sizeLimit: no ENOSPC on an emptyDir, the kubelet evicts the pod instead
    // (about 10 s later: cluster.sh's --volume-stats-agg-period), and the command must end then,
    // not after its sleep (the test's 180 s would run out first).
    const cap = captureIO();
    const started = Date.now();
    const error = await moat
      .exec('full', ['sh', '-c', 'dd if=/dev/zero of=big bs=1M count=100 2>/dev/null; echo written; sleep 170'], cap.io, { sync: true })
      .then(
        (result) => result,
        (e: unknown) => e,
      );
    const seconds = (Date.now() - started) / 1000;
    expect(isMoatError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'E_ENGINE_FAILED', exitCode: 4, details: { podEnd: 'evicted' } });
    expect((error as Error).message).toMatch(/^pod \S+ was evicted by its node: .*(EmptyDir|ephemeral)/i);
    expect((error as Error).message).not.toContain('\n');
    expect((error as { hint?: string }).hint).toMatch(/limits\.disk/);
    expect(seconds).toBeLessThan(120);
    expect(cap.out()).toContain('written');
    const pods = await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=full' });
    expect(pods.items.map((p) => p.status?.reason)).toEqual(['Evicted']);
    // The next command: the task has no running container (the message shown when it is not so).
    const next = await moat.exec('full', ['true'], captureIO().io, { sync: false }).then(
      () => undefined,
      (e: { code?: string; exitCode?: number; message?: string }) => ({ code: e.code, exitCode: e.exitCode, message: e.message }),
    );
    expect(next).toMatchObject({ code: 'E_TASK_NOT_RUNNING', exitCode: 7 });
    expect(gitIn(scratch.repo, 'log', '--format=%s', '-1', 'moat/full')).toBe('before the flood');
    await moat.rm('full', { force: true });
    await moat.gc();
    expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=full' })).items).toEqual([]);
    expect((await core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: 'moat.task=full' })).items).toEqual([]);
  });

  it('a pod deleted (as kubectl delete does) while a command runs: the command ends, one line says deleted, commits home', async () => {
    await moat.up({ task: 'del' });
    const commit = await moat.exec('del', ['sh', '-c', 'echo kept > kept.txt && git add kept.txt && git commit -qm "before the delete"'], captureIO().io, {
      sync: true,
    });
    expect(commit.exitCode).toBe(0);
    const cap = captureIO();
    const running = moat.exec('del', ['sh', '-c', 'echo started; sleep 170'], cap.io, { sync: true }).then(
      (result) => result,
      (e: unknown) => e,
    );
    for (let i = 0; i < 300 && !cap.out().includes('started'); i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(cap.out()).toContain('started');
    const [pod] = (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=del' })).items;
    const started = Date.now();
    // kubectl delete's default: a 30 s grace period, the pod marked for deletion at once.
    await core.deleteNamespacedPod({ name: pod!.metadata!.name!, namespace: ns.name });
    const error = await running;
    const seconds = (Date.now() - started) / 1000;
    expect(isMoatError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'E_ENGINE_FAILED', exitCode: 4, details: { podEnd: 'deleted' } });
    expect((error as Error).message).toBe(`pod ${pod!.metadata!.name} was deleted while the command ran`);
    expect((error as { hint?: string }).hint).toMatch(/moat reset TASK/);
    // Well within the pod's 30 s grace: the watch ended it, not the container's death.
    expect(seconds).toBeLessThan(25);
    expect(gitIn(scratch.repo, 'log', '--format=%s', '-1', 'moat/del')).toBe('before the delete');
    await moat.rm('del', { force: true });
    await moat.gc();
    expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=del' })).items).toEqual([]);
    expect((await core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: 'moat.task=del' })).items).toEqual([]);
  });
});
