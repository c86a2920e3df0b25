import { execFileSync, spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { sandboxSpec } from '../../src/domain/sandbox-spec.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import { labelSelector, labelValue, labelsOf, podManifest, podLabels, NETGUARD_SCRIPT } from '../../src/engine/kubernetes-pod.js';
import { exitCodeOf, framedCommand, stdinFrame } from '../../src/engine/kubernetes-exec.js';
import { containerInfo, parseStats, startVerdict } from '../../src/engine/kubernetes-engine.js';

type Pod = {
  metadata: { name: string; labels: Record<string, string>; annotations: Record<string, string> };
  spec: Record<string, any>;
};

function spec(overrides: Partial<Parameters<typeof sandboxSpec>[0]> = {}) {
  return sandboxSpec({
    containerName: 'moat-abc-fix',
    taskName: 'fix',
    image: 'moat-base:bookworm',
    workspace: { kind: 'volume', name: 'moat-abc-fix-workspace' },
    uid: 1000,
    gid: 1000,
    limits: { ...DEFAULT_LIMITS, memoryBytes: 256 * 1024 ** 2, cpus: 0.5 },
    env: { FOO: 'bar' },
    labels: { 'moat.task': 'fix', 'moat.template': 'node+python' },
    egressBridged: true,
    ...overrides,
  });
}

describe('a task as a Pod', () => {
  const pod = podManifest({ ...spec(), image: 'moat-tpl-repo-chosen:1' }, { helperImage: 'moat-base:bookworm', workspaceBytes: 1024 ** 3 }) as unknown as Pod;
  const sandbox = pod.spec.containers[0];

  it('has no API token, no service links, no host namespaces, no resolver of its own', () => {
    expect(pod.spec.automountServiceAccountToken).toBe(false);
    expect(pod.spec.enableServiceLinks).toBe(false);
    expect([pod.spec.hostNetwork, pod.spec.hostPID, pod.spec.hostIPC]).toEqual([false, false, false]);
    expect(pod.spec.dnsPolicy).toBe('None');
    expect(pod.spec.dnsConfig.nameservers).toEqual(['127.0.0.1']);
    expect(pod.spec.restartPolicy).toBe('Never');
  });

  it('runs the sandbox hardened: non-root, read-only root, no capability, no privilege escalation, RuntimeDefault seccomp', () => {
    expect(pod.spec.securityContext).toMatchObject({ runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(sandbox.securityContext).toMatchObject({
      runAsUser: 1000,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(sandbox.imagePullPolicy).toBe('Never');
    expect(sandbox.resources.limits).toEqual({ cpu: '500m', memory: String(256 * 1024 ** 2) });
  });

  it("takes the network away before the sandbox starts, with NET_ADMIN and CHOWN alone, from the user's base image", () => {
    const guard = pod.spec.initContainers[0];
    expect(guard.securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['NET_ADMIN', 'CHOWN'] });
    // The task's image is the repository's choice: the guard never runs from it.
    expect(guard.image).toBe('moat-base:bookworm');
    expect(sandbox.image).toBe('moat-tpl-repo-chosen:1');
    expect(guard.command.slice(3)).toEqual(['1000', '1000', '/workspace']);
    expect(guard.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(guard.command.slice(0, 2)).toEqual(['/usr/bin/perl', '-e']);
  });

  it('sizes the workspace and the memory-backed scratch folders', () => {
    const volumes = Object.fromEntries(pod.spec.volumes.map((v: { name: string; emptyDir: object }) => [v.name, v.emptyDir]));
    expect(volumes.workspace).toEqual({ sizeLimit: String(1024 ** 3) });
    const mounts = Object.fromEntries(sandbox.volumeMounts.map((m: { name: string; mountPath: string }) => [m.mountPath, m.name]));
    expect(mounts['/workspace']).toBe('workspace');
    expect(volumes[mounts['/tmp']]).toEqual({ medium: 'Memory', sizeLimit: String(DEFAULT_LIMITS.tmpBytes) });
  });

  it('keeps the open-files limit (Kubernetes sets no rlimit) and the environment', () => {
    expect(sandbox.command.slice(0, 3)).toEqual(['/usr/bin/prlimit', `--nofile=${DEFAULT_LIMITS.nofile}:${DEFAULT_LIMITS.nofile}`, '--']);
    expect(sandbox.env).toContainEqual({ name: 'FOO', value: 'bar' });
    expect(sandbox.env).toContainEqual({ name: 'HTTPS_PROXY', value: 'http://127.0.0.1:3128' });
  });

  it('refuses host folders and asks gVisor of its RuntimeClass', () => {
    expect(() => podManifest(spec({ workspace: { kind: 'host', path: '/x' } }), { helperImage: 'b' })).toThrow(/volume/);
    const gvisor = podManifest(spec({ gvisorRuntime: 'runsc' }), { helperImage: 'b', gvisorRuntimeClass: 'gvisor' }) as unknown as Pod;
    expect(gvisor.spec.runtimeClassName).toBe('gvisor');
  });

  it("keeps moat's labels exactly while label values stay in Kubernetes' alphabet", () => {
    expect(pod.metadata.labels['moat.template']).toMatch(/^h-[0-9a-f]{40}$/);
    expect(labelsOf(pod.metadata)).toEqual({ 'moat.task': 'fix', 'moat.template': 'node+python' });
    expect(labelSelector({ 'moat.template': 'node+python', 'moat.home': '' })).toBe(`moat.template=${labelValue('node+python')},moat.home`);
    expect(podLabels({ a: 'fix' })).toEqual({ a: 'fix' });
  });
});

describe('exec over the API server', () => {
  it('frames stdin so that its end reaches the command, and only without a terminal', () => {
    expect(framedCommand(['cat'], false, false)).toEqual(['cat']);
    expect(framedCommand(['cat'], true, true)).toEqual(['cat']);
    const framed = framedCommand(['wc', '-c'], true, false);
    const input = Buffer.concat([stdinFrame(Buffer.from('hello\n')), stdinFrame(Buffer.alloc(70_000, 0x61)), stdinFrame(Buffer.alloc(0))]);
    // The frames as the sandbox's sh reads them (channel byte stripped, as the API server does).
    const wire = Buffer.concat(splitFrames(input));
    expect(execFileSync(framed[0]!, framed.slice(1), { input: wire }).toString().trim()).toBe(String(6 + 70_000));
  });

  it('ends with the command although stdin stays open, and gives the command a process group of its own', async () => {
    const framed = framedCommand(['sh', '-c', 'head -c 3; echo " $$ $(ps -o pgid= -p $$)"; exit 5'], true, false);
    const child = spawn(framed[0]!, framed.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stdin.write(stdinFrame('abc').subarray(1));
    // stdin is never ended: the exec must still end when the command has.
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.stdin.destroy();
    expect(code).toBe(5);
    const [text, pid, pgid] = out.trim().split(/\s+/);
    expect(text).toBe('abc');
    expect(pgid).toBe(pid);
  });

  it('frames text by its bytes', () => {
    expect(stdinFrame('é')).toEqual(Buffer.from([0, 0x32, 0x0a, 0xc3, 0xa9]));
  });

  it('reads the exit status from the status channel, and refuses a status without one', () => {
    expect(exitCodeOf({ status: 'Success' })).toBe(0);
    expect(exitCodeOf({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '42' }] } })).toBe(42);
    expect(() => exitCodeOf({ status: 'Failure', message: 'container not found ("sandbox")' })).toThrow(/could not run in the pod/);
  });
});

describe('a pod in moat terms', () => {
  const base = { metadata: { name: 'p', annotations: {} }, spec: { containers: [{ name: 'sandbox', image: 'i' }] } };

  it('says running, OOM-killed, evicted', () => {
    expect(containerInfo({ ...base, status: { phase: 'Running', containerStatuses: [{ name: 'sandbox', state: { running: {} } }] } } as never).running).toBe(
      true,
    );
    const oom = containerInfo({
      ...base,
      status: { phase: 'Failed', containerStatuses: [{ name: 'sandbox', state: { terminated: { exitCode: 137, reason: 'OOMKilled' } } }] },
    } as never);
    expect([oom.running, oom.oomKilled, oom.exitCode, oom.state]).toEqual([false, true, 137, 'exited']);
    const evicted = containerInfo({ ...base, status: { phase: 'Failed', reason: 'Evicted' } } as never);
    expect([evicted.running, evicted.exitCode]).toEqual([false, 137]);
  });

  it('says why a pod will not start', () => {
    const missing = startVerdict({
      ...base,
      status: { phase: 'Pending', containerStatuses: [{ name: 'sandbox', state: { waiting: { reason: 'ErrImageNeverPull' } } }] },
    } as never);
    expect(missing !== 'running' && missing.failed?.code).toBe('E_IMAGE_MISSING');
    const guard = startVerdict({
      ...base,
      status: {
        phase: 'Pending',
        initContainerStatuses: [{ name: 'netguard', state: { terminated: { exitCode: 1, message: 'interface eth0 is still up' } } }],
      },
    } as never);
    expect(guard !== 'running' && guard.failed?.message).toMatch(/network could not be taken away/);
    const unschedulable = startVerdict({
      ...base,
      status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes are available' }] },
    } as never);
    expect(unschedulable !== 'running' && unschedulable.unschedulable).toMatch(/0\/1/);
  });

  it('reads stats from cgroup figures', () => {
    expect(parseStats('cpu 1000000000 1250000000\nmem 300\nlimit 1000\ninactive 100\npids 7\n')).toEqual({
      cpuPercent: 50,
      memoryBytes: 200,
      memoryLimitBytes: 1000,
      pids: 7,
    });
  });

  it('netguard script compiles', () => {
    expect(execFileSync('perl', ['-c', '-e', NETGUARD_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] }).toString()).toBe('');
  });
});

/** The stdin frames without their channel byte. */
function splitFrames(input: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < input.length) {
    const newline = input.indexOf(0x0a, at + 1);
    const length = Number(input.subarray(at + 1, newline).toString());
    out.push(input.subarray(at + 1, newline + 1 + length));
    at = newline + 1 + length;
  }
  return out;
}
