import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CONTAINER_LOG } from '../domain/sandbox-spec.js';
import { formatSize } from '../domain/size.js';
import { enforcementText } from '../domain/limit-enforcement.js';
import type { ContainerEngine, EngineKind } from '../engine/engine.js';
import type { EngineEndpoint } from '../engine/find-engine.js';
import { isMoatError } from '../errors.js';
import type { MoatContext } from './context.js';
import { describeDisk, planDisk } from './disk-plan.js';
import type { DoctorCheck } from './doctor.js';
import { gvisorCheck } from './doctor-gvisor.js';
import { podmanSocketPath } from '../engine/podman-service.js';

/** The four ways moat can run a sandbox on one host: an engine and the kernel under the sandbox. */
export type EngineConfigurationName = 'docker+runc' | 'docker+gvisor' | 'podman rootful' | 'podman rootless';

/** One engine configuration of this machine: whether it answers here, and what holds under it. */
export interface EngineConfiguration {
  name: EngineConfigurationName;
  /** ok: checked here and usable; warn: present but not usable as found (fix says how); absent: not installed. */
  status: 'ok' | 'warn' | 'absent';
  detail: string;
  /** What it enforces, key by key (the same keys as the report's `enforcement`); empty when not checked. */
  enforces: Record<string, string>;
  fix?: string;
}

/**
 * The container logs' cap as each engine holds it. Docker's json-file driver rotates max-file
 * files of max-size; Podman maps max-size to conmon's log-size-max and ignores max-file: one
 * file, truncated when it reaches the size (read back from `podman inspect`: LogConfig.Size 10.49MB).
 */
export function containerLogCap(kind: EngineKind | undefined): string {
  if (kind === 'podman') {
    return `one file of ${formatSize(CONTAINER_LOG.maxBytes)} per container (Podman's conmon truncates it when full; max-file is not honoured): at most ${formatSize(CONTAINER_LOG.maxBytes)} per task`;
  }
  return `${CONTAINER_LOG.files} files of ${formatSize(CONTAINER_LOG.maxBytes)} per container (the engine's json-file driver): at most ${formatSize(CONTAINER_LOG.files * CONTAINER_LOG.maxBytes)} per task`;
}

const DOCKER_SOCKET = '/var/run/docker.sock';
const PODMAN_ROOT_SOCKET = '/run/podman/podman.sock';

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

function onPath(env: NodeJS.ProcessEnv, name: string): boolean {
  return (env.PATH ?? '/usr/bin:/bin').split(':').some((dir) => dir && existsSync(join(dir, name)));
}

async function open(kind: 'docker' | 'podman', socketPath: string): Promise<ContainerEngine> {
  const endpoint: EngineEndpoint = { kind, transport: 'unix', socketPath, source: 'doctor' };
  if (kind === 'podman') return new (await import('../engine/podman-engine.js')).PodmanEngine(endpoint);
  return new (await import('../engine/docker-engine.js')).DockerEngine(endpoint);
}

/** What an engine that answered holds: seccomp, the cgroup limits (or their gap), network, disk, logs. */
async function enforcedBy(ctx: MoatContext, engine: ContainerEngine, image: string, uid: number): Promise<Record<string, string>> {
  const info = await engine.info();
  const gap = (await engine.limitEnforcement?.()) ?? { unenforced: [] };
  const text = enforcementText(gap.unenforced, gap.why);
  const not = new Set(gap.unenforced);
  const plan = await planDisk(engine, { uid, helperImage: image, env: ctx.env });
  return {
    seccomp: info.securityOptions.some((o) => o.includes('seccomp')) ? 'engine default profile' : 'none',
    memory: not.has('memory') ? text.memory : `kernel (memory cgroup v${info.cgroupVersion}, swap held to the same limit)`,
    cpu: not.has('cpus') ? text.cpus : 'kernel (CFS quota)',
    pids: not.has('pids') ? text.pids : 'kernel (pids cgroup)',
    network: "none: no interface but loopback; the way out is moat's gateway",
    disk: describeDisk(plan),
    logs: containerLogCap(info.kind),
    ...(info.rootless
      ? { user: "rootless: the engine runs as an unprivileged user (a container escape lands there); workspace files stay the user's (keep-id)" }
      : {}),
  };
}

async function probe(
  ctx: MoatContext,
  name: EngineConfigurationName,
  kind: 'docker' | 'podman',
  socketPath: string,
  image: string,
): Promise<{ row: EngineConfiguration; engine?: ContainerEngine }> {
  try {
    const engine = await open(kind, socketPath);
    await engine.ping();
    const info = await engine.info();
    // A user's service is judged as that user would run moat (root's loop mounts are not theirs).
    const uid = ctx.hostUser.uid === 0 ? statSync(socketPath).uid : ctx.hostUser.uid;
    const enforces = await enforcedBy(ctx, engine, image, uid);
    const gaps = Object.values(enforces).some((v) => v.includes('NOT enforced'));
    return {
      engine,
      row: {
        name,
        status: gaps ? 'warn' : 'ok',
        detail: `${info.kind} ${info.version} at ${socketPath}${info.rootless ? ' (rootless)' : ''}`,
        enforces,
        ...(gaps
          ? {
              fix: 'cgroup limits need a rootful engine or cgroup v2 with delegation; moat up refuses until your config accepts the gap (acceptUnenforcedLimits)',
            }
          : {}),
      },
    };
  } catch (error) {
    const detail = isMoatError(error) ? error.message : (error as Error).message;
    return { row: { name, status: 'warn', detail: `at ${socketPath}, but it did not answer: ${detail.slice(0, 200)}`, enforces: {} } };
  }
}

/** Rootless Podman services of this host: the caller's own, or (for root) every user's under /run/user. */
function rootlessSockets(ctx: MoatContext): string[] {
  const uid = ctx.hostUser.uid;
  if (uid !== 0) {
    // The service this command uses (MOAT_ENGINE_SOCKET), the one XDG_RUNTIME_DIR names, the login's usual place.
    const candidates = [
      ctx.env.MOAT_ENGINE === 'podman' ? ctx.env.MOAT_ENGINE_SOCKET : undefined,
      podmanSocketPath(ctx.env, uid),
      join('/run/user', String(uid), 'podman', 'podman.sock'),
    ];
    const own = candidates.filter((path): path is string => path !== undefined && isSocket(path) && statSync(path).uid === uid);
    return [...new Set(own)].slice(0, 1);
  }
  const found: string[] = [];
  for (const user of existsSync('/run/user') ? readdirSync('/run/user') : []) {
    const socket = join('/run/user', user, 'podman', 'podman.sock');
    if (/^\d+$/.test(user) && user !== '0' && isSocket(socket)) found.push(socket);
  }
  return found;
}

/**
 * `moat doctor`: every engine configuration of this machine (Docker with runc, Docker with
 * gVisor, rootful and rootless Podman), each checked where it answers, with what it enforces. The
 * configuration doctor was run under is given (its engine and gVisor check), so nothing is asked twice.
 */
export async function engineConfigurations(
  ctx: MoatContext,
  image: string,
  current?: { engine: ContainerEngine; kind: EngineKind; gvisor?: { check: DoctorCheck; enforcement?: Record<string, string> } },
): Promise<EngineConfiguration[]> {
  const rows: EngineConfiguration[] = [];

  // Docker with runc, and gVisor registered with that Docker (checked by running a sandbox under it).
  const dockerSocket = ctx.env.DOCKER_HOST?.startsWith('unix://') ? ctx.env.DOCKER_HOST.slice('unix://'.length) : DOCKER_SOCKET;
  if (isSocket(dockerSocket)) {
    const docker = await probe(ctx, 'docker+runc', 'docker', dockerSocket, image);
    rows.push(docker.row);
    const gvisor = current?.kind === 'docker' && current.gvisor ? current.gvisor : docker.engine ? await gvisorCheck(ctx, docker.engine, image) : undefined;
    rows.push(
      gvisor && gvisor.check.status === 'ok'
        ? {
            name: 'docker+gvisor',
            status: 'ok',
            detail: gvisor.check.detail,
            enforces: {
              kernel: "gVisor's user-space kernel between the agent and the host's",
              ...docker.row.enforces,
              pids: gvisor.enforcement?.['gvisor.pids'] ?? "gVisor's kernel (RLIMIT_NPROC per sandbox)",
              network: "none in the sandbox; the way out is moat's exec bridge (gVisor cannot connect a host socket)",
            },
          }
        : { name: 'docker+gvisor', status: 'warn', detail: gvisor?.check.detail ?? 'Docker did not answer', enforces: {}, fix: gvisor?.check.fix },
    );
  } else {
    const fix = 'apt-get install docker.io (then scripts/setup-gvisor.sh for gVisor)';
    rows.push({ name: 'docker+runc', status: 'absent', detail: `no Docker socket at ${dockerSocket}`, enforces: {}, fix });
    rows.push({ name: 'docker+gvisor', status: 'absent', detail: 'needs Docker', enforces: {}, fix });
  }

  // Podman: root's service, and the services of ordinary users (rootless: never a daemon as root).
  const podman = onPath(ctx.env, 'podman');
  if (!podman) {
    rows.push({
      name: 'podman rootful',
      status: 'absent',
      detail: 'podman is not installed',
      enforces: {},
      fix: 'as root: bash scripts/setup-podman.sh rootful',
    });
    rows.push({
      name: 'podman rootless',
      status: 'absent',
      detail: 'podman is not installed',
      enforces: {},
      fix: 'as root: bash scripts/setup-podman.sh rootless',
    });
    return rows;
  }
  if (ctx.hostUser.uid === 0 && isSocket(PODMAN_ROOT_SOCKET)) rows.push((await probe(ctx, 'podman rootful', 'podman', PODMAN_ROOT_SOCKET, image)).row);
  else
    rows.push({
      name: 'podman rootful',
      status: 'warn',
      detail: ctx.hostUser.uid === 0 ? `installed; no service at ${PODMAN_ROOT_SOCKET}` : 'installed; only root can use rootful Podman',
      enforces: {},
      fix: `engine: podman (or --engine podman) starts it for the command (podman system service); as root: bash scripts/setup-podman.sh rootful`,
    });
  const rootless = rootlessSockets(ctx);
  if (rootless.length > 0) for (const socket of rootless) rows.push((await probe(ctx, 'podman rootless', 'podman', socket, image)).row);
  else {
    const missing = ['newuidmap', 'slirp4netns'].filter((tool) => !onPath({ PATH: `${ctx.env.PATH ?? ''}:/usr/bin:/usr/sbin` }, tool));
    rows.push({
      name: 'podman rootless',
      status: 'warn',
      detail:
        missing.length > 0
          ? `installed, but ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing`
          : `installed; no user's service is running (${ctx.hostUser.uid === 0 ? 'none under /run/user' : 'none in XDG_RUNTIME_DIR'})`,
      enforces: {},
      fix:
        missing.length > 0
          ? 'apt-get install uidmap slirp4netns'
          : "as the user: moat --engine podman doctor (starts the user's own service); as root: bash scripts/setup-podman.sh rootless",
    });
  }
  return rows;
}
