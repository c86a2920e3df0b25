import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig, NetworkingV1Api, type CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { captureIO, gitIn, MOAT_BIN } from '../helpers/fixtures.js';
import { ADMIN_KUBECONFIG, ClusterScratch, NOBODY_KUBECONFIG, testNamespace } from '../helpers/kubernetes.js';

function networking(): NetworkingV1Api {
  const kc = new KubeConfig();
  kc.loadFromFile(ADMIN_KUBECONFIG);
  return kc.makeApiClient(NetworkingV1Api);
}

/**
 * moat with `engine: kubernetes` on a real cluster (scripts/cluster.sh): a task is a pod, its
 * workspace an emptyDir seeded and read over exec, its only way out moat's gateway over the exec
 * bridge. Run by .ci/run's kubernetes phase (vitest.kubernetes.config.ts).
 */
describe('moat on Kubernetes', () => {
  let ns: Awaited<ReturnType<typeof testNamespace>>;
  let scratch: ClusterScratch;
  let moat: Moat;
  let core: CoreV1Api;
  let upstream: Server;
  let port = 0;
  const seen: string[] = [];

  const pod = async (task: string): Promise<V1Pod> => {
    const record = (await moat.ls()).find((t) => t.name === task)!;
    return core.readNamespacedPod({ name: record.containerId!, namespace: ns.name });
  };
  const sh = async (task: string, script: string, options: { stdin?: string; sync?: boolean } = {}) => {
    const cap = captureIO(options.stdin);
    const result = await moat.exec(task, ['sh', '-c', script], cap.io, { sync: options.sync ?? false });
    return { code: result.exitCode, out: cap.out(), err: cap.err(), result };
  };

  beforeAll(async () => {
    ns = await testNamespace();
    core = ns.core;
    scratch = new ClusterScratch(ns.name);
    upstream = createServer((req, res) => {
      seen.push(req.url ?? '');
      res.end(`upstream saw ${req.url}\n`);
    });
    port = await new Promise<number>((resolve) => upstream.listen(0, '127.0.0.1', () => resolve((upstream.address() as { port: number }).port)));
    // A pod's spec carries no process limit: the user accepts that gap by name, or nothing starts.
    scratch.writeConfig('acceptUnenforcedLimits: [pids]\nlimits:\n  memory: 256m\n  disk: 1g\negress:\n  allow: [127.0.0.1/32]\n');
    moat = scratch.moat();
  });
  afterAll(async () => {
    upstream?.close();
    await scratch?.cleanup();
    await ns?.remove();
  });

  it('refuses, making nothing, until the user accepts that pids is not enforced', async () => {
    const strict = new ClusterScratch(ns.name);
    try {
      await expect(strict.moat().up({ task: 'strict' })).rejects.toMatchObject({ code: 'E_LIMITS_UNENFORCED' });
      expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=strict' })).items).toEqual([]);
    } finally {
      await strict.cleanup();
    }
  });

  it('runs a command in a fresh pod and leaves nothing when it made no work', async () => {
    const cap = captureIO();
    const result = await moat.run(['sh', '-c', 'echo hello from $(hostname)'], cap.io);
    expect(result.exitCode).toBe(0);
    expect(cap.out()).toMatch(/^hello from moat-/);
    expect(result.removed).toBe(true);
    expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: `moat.repo` })).items).toEqual([]);
    expect((await core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: `moat.repo` })).items).toEqual([]);
  });

  it('makes a hardened pod, as the API server reports it', async () => {
    const task = await moat.up({ task: 'hard' });
    expect(task.workspace).toBe('volume');
    const p = await pod('hard');
    // ls says where the pod runs, and that the node takes pods (node-not-ready.test.ts: when not).
    expect((await moat.ls()).find((t) => t.name === 'hard')?.node).toEqual({ name: p.spec?.nodeName, ready: true });
    expect(p.spec?.nodeName).toBe('localhost');
    expect(p.spec?.automountServiceAccountToken).toBe(false);
    expect(p.spec?.enableServiceLinks).toBe(false);
    expect(p.spec?.hostNetwork ?? false).toBe(false);
    expect(p.spec?.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    const sandbox = p.spec!.containers.find((c) => c.name === 'sandbox')!;
    expect(sandbox.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(sandbox.resources?.limits?.memory).toBe(String(256 * 1024 ** 2));
    // Nothing of a host: only emptyDirs.
    expect(p.spec!.volumes!.every((v) => v.emptyDir !== undefined && v.hostPath === undefined)).toBe(true);
    expect(p.spec!.volumes!.find((v) => v.name === 'workspace')?.emptyDir?.sizeLimit).toBe(String(1024 ** 3));
    expect(JSON.stringify(p)).not.toContain(scratch.root);
    // The network guard ran, and succeeded, before the sandbox started.
    const guard = p.status?.initContainerStatuses?.find((c) => c.name === 'netguard');
    expect(guard?.state?.terminated?.exitCode).toBe(0);
    // A second layer where the network plugin enforces policies: every pod moat makes is denied all traffic.
    const policy = await networking().readNamespacedNetworkPolicy({ name: 'moat-sandbox-deny-all', namespace: ns.name });
    expect(policy.spec).toMatchObject({ policyTypes: ['Ingress', 'Egress'], podSelector: { matchExpressions: [{ key: 'moat.task', operator: 'Exists' }] } });
    expect(policy.spec?.egress ?? []).toEqual([]);
  });

  it('inside: non-root, no capability, no new privileges, read-only root, no API token, no interface but lo, no API server', async () => {
    const script = [
      'id -u',
      "grep -E '^(CapEff|CapPrm|NoNewPrivs):' /proc/self/status",
      'touch /usr/moat-x 2>/dev/null && echo root-writable || echo root-read-only',
      'ls /var/run/secrets/kubernetes.io 2>/dev/null && echo token || echo no-token',
      // Interfaces the network guard took down may still exist; none but lo is up, and no route is left.
      'for f in /sys/class/net/*; do [ $(( $(cat $f/flags) & 1 )) -eq 1 ] && printf "%s " "${f##*/}"; done; echo',
      'echo "routes $(($(wc -l < /proc/net/route) - 1))"',
      'curl -sk -m 3 https://127.0.0.1:6443/version >/dev/null 2>&1 && echo api-reached || echo api-unreachable',
      'curl -sk -m 3 --noproxy "*" https://kubernetes.default.svc/version >/dev/null 2>&1 && echo svc-reached || echo svc-unreachable',
    ].join('; ');
    const { code, out } = await sh('hard', script);
    expect(code).toBe(0);
    const lines = out.trim().split('\n');
    expect(Number(lines[0])).toBeGreaterThan(0);
    expect(out).toMatch(/CapEff:\s+0000000000000000/);
    expect(out).toMatch(/NoNewPrivs:\s+1/);
    expect(out).toContain('root-read-only');
    expect(out).toContain('no-token');
    expect(out).toMatch(/\nlo \nroutes 0\n/);
    expect(out).toContain('api-unreachable');
    expect(out).toContain('svc-unreachable');
  });

  it('seeds the repository over exec; commits come home; stdin reaches the command and ends', async () => {
    const input = 'x'.repeat(300_000);
    const piped = await sh('hard', 'wc -c', { stdin: input });
    expect(piped.out.trim()).toBe('300000');
    const { code, out } = await sh('hard', 'git log --format=%s; echo pod > made.txt && git add made.txt && git commit -qm "made in a pod"', { sync: true });
    expect(code).toBe(0);
    expect(out).toContain('initial');
    expect(gitIn(scratch.repo, 'log', '--format=%s', '-1', 'moat/hard')).toBe('made in a pod');
  });

  it("gives a command the variables and working directory it was asked for (exec's --env, a terminal's TERM)", async () => {
    const cap = captureIO();
    const result = await moat.exec('hard', ['sh', '-c', 'echo "$GREETING|$OTHER|$PWD"'], cap.io, {
      sync: false,
      env: { GREETING: "it's me", OTHER: 'a -- b' },
      workdir: '/tmp',
    });
    expect({ code: result.exitCode, out: cap.out(), err: cap.err() }).toEqual({ code: 0, out: "it's me|a -- b|/tmp\n", err: '' });
  });

  it('runs a command on a terminal, as moat shell does (stdin from the terminal), with TERM set', async () => {
    const cap = captureIO('typed\n');
    const result = await moat.exec('hard', ['sh', '-c', 'echo "term=$TERM"; tty'], cap.io, { sync: false, tty: true });
    expect(result.exitCode).toBe(0);
    expect(cap.out()).toMatch(/term=[A-Za-z0-9._+-]+\r?\n/);
    expect(cap.out()).toMatch(/\/dev\/pts\/\d+/);
    // From the library, without any input: the output still comes (the kubelet sends none without an input side).
    const quiet = captureIO();
    expect((await moat.exec('hard', ['sh', '-c', 'echo "term=$TERM"'], quiet.io, { sync: false, tty: true })).exitCode).toBe(0);
    expect(quiet.out()).toMatch(/term=[A-Za-z0-9._+-]+\r?\n/);
  });

  it('brings commits and uncommitted work home on down, and the next pod gets both back', async () => {
    await sh('hard', 'echo changed >> README.md; echo new > untracked.txt', { sync: true });
    const first = (await pod('hard')).metadata!.uid;
    await moat.down('hard');
    expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=hard' })).items).toEqual([]);
    // Nothing is left to read once the pod is gone: the work is at home.
    const sync = await moat.sync('hard');
    expect(sync.warning).toBeUndefined();
    expect(sync.commits).toBe(1);
    await moat.reset('hard');
    expect((await pod('hard')).metadata!.uid).not.toBe(first);
    const { out } = await sh('hard', 'cat made.txt untracked.txt; tail -1 README.md; git status --porcelain');
    expect(out).toBe('pod\nnew\nchanged\n M README.md\n?? untracked.txt\n');
  });

  it('reaches the network only through moat gateway, over the exec bridge, audited', async () => {
    await moat.up({ task: 'net', network: 'allowlist' });
    const script = `for i in 1 2 3; do curl --noproxy '' -sS -m 20 http://127.0.0.1:${port}/hello$i || exit 1; done; curl -sS -m 20 -o /dev/null -w '%{http_code}\\n' http://denied.invalid/ ; curl --noproxy '*' -sS -m 5 http://127.0.0.1:${port}/direct >/dev/null 2>&1 && echo direct-reached || echo direct-refused`;
    const { code, out } = await sh('net', script);
    expect(code).toBe(0);
    expect(out).toContain('upstream saw /hello3');
    expect(out).toMatch(/\n403\n/);
    expect(out).toContain('direct-refused');
    expect(seen).toEqual(['/hello1', '/hello2', '/hello3']);
    const audit = await moat.egress('net');
    expect(audit.filter((a) => a.decision === 'allowed').length).toBeGreaterThanOrEqual(3);
    expect(audit.some((a) => a.decision === 'denied' && a.host === 'denied.invalid')).toBe(true);
    await moat.rm('net', { force: true });
  });

  it('holds the memory limit, and says a command died of it', async () => {
    const { code, result } = await sh('hard', 'tail /dev/zero');
    expect(code).toBe(137);
    expect(result.reason.kind).toBe('oom');
  });

  it('says a pod deleted behind its back is not running, and reset brings the task back with its commits', async () => {
    const p = await pod('hard');
    await core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: ns.name, gracePeriodSeconds: 0 });
    for (
      let i = 0;
      i < 100 &&
      (await core.readNamespacedPod({ name: p.metadata!.name!, namespace: ns.name }).then(
        () => true,
        () => false,
      ));
      i += 1
    ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await expect(sh('hard', 'true')).rejects.toMatchObject({ code: 'E_TASK_NOT_RUNNING' });
    await moat.reset('hard');
    expect((await sh('hard', 'cat made.txt')).out).toBe('pod\n');
    await moat.rm('hard', { force: true });
    expect((await core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: 'moat.task=hard' })).items).toEqual([]);
  });

  it('kill -9 of moat in the middle of up: gc removes the pod, its volume, the record and the branch', async () => {
    const child = spawn(process.execPath, [MOAT_BIN, 'up', '--task', 'killed'], {
      cwd: scratch.repo,
      env: scratch.env({ MOAT_SERVER: 'off' }),
      stdio: 'ignore',
    });
    try {
      // Killed once its pod exists, before up has finished with it.
      for (let i = 0; i < 600; i += 1) {
        if ((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=killed' })).items.length > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((resolve) => child.once('exit', resolve));
    expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=killed' })).items.length).toBe(1);
    const result = await moat.gc();
    expect(result.removedTasks).toContain('killed');
    expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=killed' })).items).toEqual([]);
    expect((await core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: 'moat.task=killed' })).items).toEqual([]);
    expect(gitIn(scratch.repo, 'branch', '--list', 'moat/killed')).toBe('');
  });

  it('says what is wrong with the cluster settings, in one line with a hint, and makes nothing', async () => {
    const bad = new ClusterScratch(ns.name);
    try {
      await expect(bad.moat({ env: { KUBECONFIG: join(bad.root, 'absent.kubeconfig') } }).up({ task: 'x' })).rejects.toMatchObject({
        code: 'E_ENGINE_UNREACHABLE',
      });
      await expect(bad.moat({ env: { MOAT_K8S_CONTEXT: 'no-such-context' } }).up({ task: 'x' })).rejects.toMatchObject({ code: 'E_ENGINE_UNREACHABLE' });
      bad.writeConfig('acceptUnenforcedLimits: [pids]\n');
      await expect(bad.moat({ env: { KUBECONFIG: NOBODY_KUBECONFIG } }).up({ task: 'x' })).rejects.toMatchObject({ code: 'E_ENGINE_PERMISSION' });
      writeFileSync(bad.config, 'acceptUnenforcedLimits: [pids]\nbaseImage: moat-no-such-image:1\n');
      await expect(bad.moat({ env: { MOAT_K8S_IMAGE_ENGINE: '' } }).up({ task: 'x' })).rejects.toMatchObject({ code: 'E_IMAGE_MISSING' });
      expect((await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'moat.task=x' })).items).toEqual([]);
      expect((await core.listNamespacedConfigMap({ namespace: ns.name, labelSelector: 'moat.task=x' })).items).toEqual([]);
    } finally {
      await bad.cleanup();
    }
  });
});
