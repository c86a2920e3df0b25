import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The one-node Kubernetes 1.20 cluster of scripts/cluster.sh (npm run cluster), checked for what
 * moat's Kubernetes engine relies on: a Ready node, a hardened pod that runs and answers exec with no
 * way out, a memory limit the kernel enforces, and a user without any permission.
 * .ci/run's kubernetes phase starts the cluster first; without it every test here fails.
 */
const STATE = '/var/lib/moat-k8s';
const ADMIN = process.env.MOAT_K8S_KUBECONFIG ?? `${STATE}/admin.kubeconfig`;
const NOBODY = `${STATE}/nobody.kubeconfig`;
const KUBECTL = existsSync('/run/moat-k8s/bin') ? `${readFileSync('/run/moat-k8s/bin', 'utf8').trim()}/kubectl` : 'kubectl';
const NS = `moat-cluster-test-${randomBytes(3).toString('hex')}`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** kubectl with the given kubeconfig; resolves with the exit code instead of throwing. */
function kubectl(args: string[], opts: { kubeconfig?: string; input?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      KUBECTL,
      ['--kubeconfig', opts.kubeconfig ?? ADMIN, '--request-timeout=30s', ...args],
      { maxBuffer: 16 * 1024 * 1024, timeout: 110_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

async function ok(args: string[], opts: { kubeconfig?: string; input?: string } = {}): Promise<string> {
  const r = await kubectl(args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The sandbox container as moat's engine will make it: every hardening field the brief names. */
function hardenedPod(name: string, command: string[], restartPolicy: 'Always' | 'Never' = 'Always'): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels: { 'moat.test': 'cluster' } },
    spec: {
      automountServiceAccountToken: false,
      restartPolicy,
      terminationGracePeriodSeconds: 1,
      securityContext: { runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'sandbox',
          image: 'moat-base:bookworm',
          imagePullPolicy: 'Never',
          command,
          resources: { limits: { memory: '256Mi' } },
          securityContext: {
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            capabilities: { drop: ['ALL'] },
          },
        },
      ],
    },
  };
}

async function exec(pod: string, script: string): Promise<Run> {
  const r = await kubectl(['-n', NS, 'exec', pod, '--', 'sh', '-c', script]);
  if (r.code !== 0) console.log(`exec ${JSON.stringify(script)} exited ${r.code}: ${r.stderr.trim()}`);
  return r;
}

describe('the test cluster (scripts/cluster.sh)', () => {
  beforeAll(async () => {
    if (!existsSync(ADMIN)) throw new Error(`no cluster: ${ADMIN} is missing (start it: npm run cluster)`);
    await ok(['create', 'namespace', NS]);
    // The namespace's default service account comes from the controller-manager; pods wait for it.
    for (let i = 0; i < 100; i++) {
      if ((await kubectl(['-n', NS, 'get', 'serviceaccount', 'default'])).code === 0) return;
      await new Promise((r) => setTimeout(r, 300));
    }
    throw new Error(`namespace ${NS} got no default service account`);
  });
  afterAll(async () => {
    await kubectl(['delete', 'namespace', NS, '--wait=true', '--timeout=90s']);
  });

  it('has one node, localhost, Ready, running Kubernetes 1.20', async () => {
    const nodes = JSON.parse(await ok(['get', 'nodes', '-o', 'json']));
    expect(nodes.items.map((n: any) => n.metadata.name)).toEqual(['localhost']);
    const node = nodes.items[0];
    expect(node.status.conditions.find((c: any) => c.type === 'Ready').status).toBe('True');
    expect(node.status.nodeInfo.kubeletVersion).toMatch(/^v1\.20\./);
    expect(node.status.nodeInfo.containerRuntimeVersion).toMatch(/^docker:\/\//);
  });

  it('runs a hardened pod that answers exec, as uid 1000 with no capabilities and no service-account token', async () => {
    const t0 = Date.now();
    await ok(['apply', '-f', '-'], { input: JSON.stringify(hardenedPod('hardened', ['sleep', 'infinity'])) });
    await ok(['-n', NS, 'wait', '--for=condition=Ready', 'pod/hardened', '--timeout=90s']);
    console.log(`hardened pod Ready in ${Date.now() - t0} ms`);

    const id = await exec('hardened', 'id -u; id -g');
    expect(id.stdout.trim().split('\n')).toEqual(['1000', '1000']);
    const status = (await exec('hardened', 'cat /proc/self/status')).stdout;
    expect(status).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(status).toMatch(/^CapBnd:\s+0000000000000000$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status).toMatch(/^Seccomp:\s+2$/m); // 2 = filter mode: RuntimeDefault is applied
    const write = await exec('hardened', 'touch /moat-write-test');
    expect(write.code).not.toBe(0);
    expect(write.stderr).toMatch(/Read-only file system/);
    const token = await exec('hardened', 'ls /var/run/secrets/kubernetes.io/serviceaccount');
    expect(token.code).not.toBe(0);

    // The kubelet reports the container running with the spec's hardening.
    const pod = JSON.parse(await ok(['-n', NS, 'get', 'pod', 'hardened', '-o', 'json']));
    expect(pod.status.containerStatuses[0].state.running).toBeDefined();
    expect(pod.spec.containers[0].securityContext.readOnlyRootFilesystem).toBe(true);
  });

  it('gives the pod no way out: loopback, an eth0 that is down and holds only an address, no route', async () => {
    // The kubelet recreates a sandbox without an IP, so scripts/cluster.sh's CNI plugin gives each pod
    // an address on a portless bridge device left down (see docs/kubernetes.md): nothing can use it.
    const dev = await exec('hardened', "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort");
    expect(dev.code).toBe(0);
    expect(dev.stdout.trim().split('\n')).toEqual(['eth0', 'lo']);
    expect((await exec('hardened', 'cat /sys/class/net/eth0/operstate')).stdout.trim()).toBe('down');
    const route = await exec('hardened', 'tail -n +2 /proc/net/route');
    expect(route.stdout.trim()).toBe('');
    const out = await exec('hardened', 'timeout 5 bash -c "</dev/tcp/1.1.1.1/443"');
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/Network is unreachable/);
  });

  it('enforces the 256Mi memory limit in the kernel', async () => {
    const limit = await exec('hardened', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max');
    expect(limit.stdout.trim()).toBe(String(256 * 1024 * 1024));
    // A process in the pod that allocates more than the limit is killed by the kernel (137 = SIGKILL)...
    const hog = await exec('hardened', 'tail /dev/zero');
    expect(hog.code).toBe(137);
    // ...and a pod whose own process does so ends OOMKilled, as the kubelet reports it.
    await ok(['apply', '-f', '-'], { input: JSON.stringify(hardenedPod('hog', ['tail', '/dev/zero'], 'Never')) });
    let terminated: any;
    for (let i = 0; i < 300 && !terminated; i++) {
      const pod = JSON.parse(await ok(['-n', NS, 'get', 'pod', 'hog', '-o', 'json']));
      terminated = pod.status.containerStatuses?.[0]?.state?.terminated;
      if (!terminated) await new Promise((r) => setTimeout(r, 300));
    }
    expect(terminated?.reason).toBe('OOMKilled');
    expect(terminated?.exitCode).toBe(137);
  });

  it('has a user with no permission at all (moat-test-nobody)', async () => {
    expect((await kubectl(['auth', 'can-i', 'create', 'pods', '-n', NS], { kubeconfig: NOBODY })).stdout.trim()).toBe('no');
    expect((await kubectl(['auth', 'can-i', 'create', 'secrets', '-n', NS], { kubeconfig: NOBODY })).stdout.trim()).toBe('no');
    const get = await kubectl(['-n', NS, 'get', 'pods'], { kubeconfig: NOBODY });
    expect(get.code).not.toBe(0);
    expect(get.stderr).toMatch(/forbidden/i);
    // The same request as admin succeeds: the refusal is about the user, not the cluster.
    expect((await kubectl(['-n', NS, 'get', 'pods'])).code).toBe(0);
  });

  it('cleans up: the pods it made are gone once they are deleted', async () => {
    await ok(['-n', NS, 'delete', 'pod', '-l', 'moat.test=cluster', '--wait=true', '--timeout=90s']);
    expect((await ok(['-n', NS, 'get', 'pods', '-o', 'name'])).trim()).toBe('');
  });
});
