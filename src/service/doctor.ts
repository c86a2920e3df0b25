import { runProcess } from '../workspace/run-process.js';
import { describeDisk, planDisk, type DiskPlan } from './disk-plan.js';
import { DEFAULT_BASE_IMAGE } from '../config/effective.js';
import { isMoatError } from '../errors.js';
import type { EngineInfo } from '../engine/engine.js';
import type { MoatContext } from './context.js';
import { hostCaps, type HostCap } from './host-caps.js';
import { egressChecks } from './doctor-egress.js';
import { gvisorCheck } from './doctor-gvisor.js';
import { engineConfigurations, type EngineConfiguration } from './doctor-engines.js';
import { reportLimitGaps } from './limit-check.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export interface DoctorReport {
  ok: boolean;
  checks: DoctorCheck[];
  /** What moat enforces on this machine, and what it cannot. */
  enforcement: Record<string, string>;
  /** Every host file (and process) a sandbox's activity makes grow, with its cap. */
  caps: HostCap[];
  /** Every engine configuration of this machine (Docker+runc, Docker+gVisor, Podman rootful and rootless), with what each enforces. */
  engines: EngineConfiguration[];
}

function versionAtLeast(version: string, minimum: number[]): boolean {
  const parts = version.split(/[.+~-]/).map((part) => Number.parseInt(part, 10));
  for (let i = 0; i < minimum.length; i += 1) {
    const have = parts[i] ?? 0;
    if (Number.isNaN(have)) return false;
    if (have !== minimum[i]) return have > minimum[i]!;
  }
  return true;
}

/**
 * On Kubernetes what holds is fixed by the pod moat makes (engine/kubernetes-pod.ts) and enforced
 * by the kubelet and the node's runtime: said as such, with the gaps (pids) from the engine.
 */
function kubernetesChecks(plan: DiskPlan, checks: DoctorCheck[], enforcement: Record<string, string>): void {
  checks.push({ name: 'seccomp', status: 'ok', detail: "every pod asks for the runtime's default profile (seccompProfile: RuntimeDefault)" });
  enforcement.seccomp = 'RuntimeDefault (the node runtime profile)';
  enforcement.memory = "the node's runtime (the container's memory limit)";
  enforcement.cpu = "the node's runtime (the container's CPU limit, CFS quota)";
  enforcement.pids = 'kernel (pids cgroup)';
  enforcement.network =
    "none: an init container with NET_ADMIN alone takes every interface but lo down before the sandbox starts (it has no capability to bring one up); the way out is moat's gateway over the exec stream; a deny-all NetworkPolicy is a second layer where the network plugin enforces it";
  enforcement.workspace =
    "an emptyDir of the task's pod, seeded and read through exec: no folder of any host is mounted; it goes with the pod (down brings the work home first)";
  enforcement.credentials = 'no service account token (automountServiceAccountToken: false), no service links; secrets stay with moat';
  enforcement.disk = `${describeDisk(plan)}; /tmp and home are memory-backed emptyDirs of a fixed size (evicted past it); the root filesystem is read-only`;
  checks.push({ name: 'disk cap', status: plan.disk === 'none' ? 'warn' : 'ok', detail: enforcement.disk });
  checks.push({
    name: 'engine capabilities',
    status: 'ok',
    detail: 'Kubernetes: no host mounts, no host cgroups (exit reasons read inside the pod), pods cannot be stopped and kept',
  });
}

/** A cluster's nodes: a task's pod waits for a Ready one (up gives up after 30 s, kubernetes-engine.ts). */
function nodesCheck(nodes: EngineInfo['nodes']): DoctorCheck {
  const fix = 'kubectl get nodes; kubectl describe node NAME (a stopped kubelet, or a node cut off from the API server)';
  if (!nodes) {
    return { name: 'nodes', status: 'warn', detail: "moat could not list the cluster's nodes (no permission?): whether one is Ready is not checked", fix };
  }
  if (nodes.length === 0) return { name: 'nodes', status: 'fail', detail: 'the cluster has no node, so no task can start', fix };
  const notReady = nodes.filter((node) => !node.ready);
  const said = notReady.map((node) => `${node.name} (${node.why ?? 'not Ready'})`).join(', ');
  if (notReady.length === nodes.length) return { name: 'nodes', status: 'fail', detail: `no node is Ready, so no task can start: ${said}`, fix };
  const ready = `${nodes.length - notReady.length} of ${nodes.length} nodes Ready`;
  return notReady.length > 0 ? { name: 'nodes', status: 'warn', detail: `${ready}; not Ready: ${said}`, fix } : { name: 'nodes', status: 'ok', detail: ready };
}

/** Checks that moat can do its job here, each finding with a fix. Never changes anything. */
export async function doctor(ctx: MoatContext): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const enforcement: Record<string, string> = {};

  const gitVersion = await runProcess('git', ['--version'], { cwd: ctx.cwd, env: { PATH: ctx.env.PATH ?? '/usr/bin:/bin' } });
  checks.push(
    gitVersion.exitCode === 0
      ? { name: 'git', status: 'ok', detail: String(gitVersion.stdout).trim() }
      : { name: 'git', status: 'fail', detail: 'git is not installed', fix: 'apt-get install git' },
  );

  let info: EngineInfo | undefined;
  let diskCapped = false;
  let remote = false;
  let plan: DiskPlan = { disk: 'none', inVolume: false };
  const gvisorEnforcement: Record<string, string> = {};
  let current: Parameters<typeof engineConfigurations>[2];
  let wantedImage = DEFAULT_BASE_IMAGE;
  try {
    const engine = await ctx.engine();
    remote = !engine.capabilities.hostMounts;
    info = await engine.info();
    checks.push({ name: 'engine', status: 'ok', detail: `${info.kind} ${info.version} (API ${info.apiVersion}) at ${engine.endpoint}` });
    const base = await engine.imageId(DEFAULT_BASE_IMAGE);
    const userConfig = await ctx.userConfig().catch(() => ({ baseImage: undefined }));
    const wanted = userConfig.baseImage ?? DEFAULT_BASE_IMAGE;
    wantedImage = wanted;
    current = { engine, kind: info.kind };
    // The same choice `up` makes (disk-plan.ts), so doctor never claims a cap that up would not make.
    plan = await planDisk(engine, { uid: ctx.hostUser.uid, helperImage: wanted, env: ctx.env });
    const baseId = wanted === DEFAULT_BASE_IMAGE ? base : await engine.imageId(wanted);
    checks.push(
      baseId
        ? { name: 'base image', status: 'ok', detail: `${wanted} present` }
        : { name: 'base image', status: 'fail', detail: `${wanted} is missing`, fix: 'bash scripts/build-base-image.sh (builds it offline with debootstrap)' },
    );
    if (baseId) {
      const gvisor = await gvisorCheck(ctx, engine, wanted);
      checks.push(gvisor.check);
      current.gvisor = gvisor;
      Object.assign(gvisorEnforcement, gvisor.enforcement ?? {});
    }
  } catch (error) {
    checks.push({
      name: 'engine',
      status: 'fail',
      detail: isMoatError(error) ? error.message : String(error),
      fix: isMoatError(error) ? error.hint : 'install and start Docker (apt-get install docker.io)',
    });
  }

  if (info?.kind === 'kubernetes') {
    kubernetesChecks(plan, checks, enforcement);
    checks.push(nodesCheck(info.nodes));
    await reportLimitGaps(await ctx.engine(), await ctx.userConfig().catch(() => ({})), checks, enforcement);
    diskCapped = plan.disk !== 'none';
  } else if (info) {
    const seccomp = info.securityOptions.some((opt) => opt.includes('seccomp'));
    checks.push(
      seccomp
        ? { name: 'seccomp', status: 'ok', detail: 'default seccomp profile applies to every task' }
        : { name: 'seccomp', status: 'fail', detail: 'the engine has no seccomp support', fix: "use a Docker built with seccomp (Debian's docker.io is)" },
    );
    enforcement.seccomp = seccomp ? 'engine default profile' : 'none';
    if (info.runcVersion) {
      // CVE-2024-21626 (leaked fd, container escape) is fixed in runc 1.1.12; Debian backported it to 1.1.5+ds1-1+deb12u1.
      const patched = versionAtLeast(info.runcVersion, [1, 1, 12]) || /deb12u[1-9]/.test(info.runcVersion);
      checks.push(
        patched
          ? { name: 'runc', status: 'ok', detail: `runc ${info.runcVersion}` }
          : {
              name: 'runc',
              status: 'warn',
              detail: `runc ${info.runcVersion} may be open to CVE-2024-21626`,
              fix: 'upgrade runc to 1.1.12 or later (apt-get upgrade runc)',
            },
      );
    }
    checks.push({
      name: 'cgroups',
      status: info.cgroupVersion === '1' || info.cgroupVersion === '2' ? 'ok' : 'warn',
      detail: `cgroup v${info.cgroupVersion} (${info.cgroupDriver} driver)`,
    });
    enforcement.memory = 'kernel (memory cgroup, swap held to the same limit)';
    enforcement.cpu = 'kernel (CFS quota)';
    enforcement.pids = 'kernel (pids cgroup)';
    await reportLimitGaps(await ctx.engine(), await ctx.userConfig().catch(() => ({})), checks, enforcement);
    enforcement.network = 'none: tasks have no network interface but loopback';
    const loop = plan.disk !== 'none';
    diskCapped = loop;
    enforcement.disk = `${describeDisk(plan)}; /tmp and home are size-limited tmpfs; the root filesystem is read-only`;
    const fix = remote
      ? "keep an eye on the engine's disk, or use an engine whose host has loop devices (/dev/loop-control) and a rootful daemon"
      : 'use a rootful engine on a machine with /dev/loop-control (a docker-group user is enough), or run moat as root with e2fsprogs';
    checks.push(loop ? { name: 'disk cap', status: 'ok', detail: enforcement.disk } : { name: 'disk cap', status: 'warn', detail: enforcement.disk, fix });
    if (remote) {
      enforcement.workspace = 'an engine volume, seeded and read through exec: no folder of this host is mounted into a sandbox';
      enforcement.network = 'none: tasks have no network interface but loopback; network modes other than none are refused on this engine';
      checks.push({
        name: 'engine capabilities',
        status: 'ok',
        detail: `remote engine: no host mounts, no host cgroups (exit reasons read through the engine); network none only`,
      });
    }
    if (info.rootless) checks.push({ name: 'rootless', status: 'ok', detail: 'the engine runs rootless: a container escape lands in an unprivileged user' });
  }

  checks.push(...(await egressChecks(ctx)));

  const uid = ctx.hostUser.uid;
  checks.push(
    uid === 0
      ? {
          name: 'host user',
          status: 'warn',
          detail: 'moat runs as root: sandboxes run as uid 1000 (sandboxUid), and workspace files are owned by that uid',
          fix: 'run moat as your normal user (in the docker group)',
        }
      : { name: 'host user', status: 'ok', detail: `sandboxes run as your uid ${uid}` },
  );
  Object.assign(enforcement, gvisorEnforcement);
  // Kubernetes is not this machine's engine: its nodes are listed by the cluster, not here.
  const engines = info?.kind === 'kubernetes' ? [] : await engineConfigurations(ctx, wantedImage, current);
  return { ok: !checks.some((c) => c.status === 'fail'), checks, enforcement, caps: await hostCaps(ctx, diskCapped, remote, info?.kind), engines };
}
