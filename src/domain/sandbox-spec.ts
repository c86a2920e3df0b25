import type { Limits } from './limits.js';

/** Where the sandbox sees the task's repository, and its home. */
export const WORKSPACE_DIR = '/workspace';
export const SANDBOX_HOME = '/home/agent';
/** Last: moat-why, beside the denials file (gateway/denials.ts); absent, and harmless, without a network. */
export const SANDBOX_PATH = '/home/agent/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/moat/egress/bin';

/** Engine-neutral description of a hardened sandbox container. Pure data, built by {@link sandboxSpec}. */
export interface SandboxSpec {
  name: string;
  image: string;
  hostname: string;
  user: string;
  workdir: string;
  command: string[];
  env: Record<string, string>;
  labels: Record<string, string>;
  /**
   * The task's repository, at {@link WORKSPACE_DIR}: a host folder (engines that share moat's host)
   * or a volume of the engine's own (any engine). The only writable place that outlives the sandbox.
   */
  workspace: WorkspaceSource;
  /** With a network: the directory holding the gateway's socket, read-only. */
  egressMount?: { source: string; target: string };
  /** With a network: moat's helper that hands the sandbox's proxy socket to the gateway, read-only. */
  helperMount?: { source: string; target: string };
  /** The task's own ssh-agent socket folder, read-only. */
  sshMount?: { source: string; target: string };
  /** Folders the user granted, read-only (package caches and the like). */
  readOnlyMounts: Array<{ source: string; target: string }>;
  tmpfs: Record<string, string>;
  limits: Limits;
  readOnlyRoot: true;
  capDrop: ['ALL'];
  noNewPrivileges: true;
  init: true;
  network: 'none';
  /**
   * `gvisor`: the container runs under gVisor's runtime, named `runtime` in the engine. Its
   * processes and threads are then limited inside by gVisor's kernel (RLIMIT_NPROC of
   * `limits.pids`), and the container's pids cgroup gets room for runsc's own threads too.
   */
  isolation: { kind: 'runc' } | { kind: 'gvisor'; runtime: string };
  /** Cap on what the engine keeps of stdout/stderr: an agent flooding its output must not fill the host disk. */
  logMaxBytes: number;
  logMaxFiles: number;
}

export type WorkspaceSource = { kind: 'host'; path: string } | { kind: 'volume'; name: string };

export interface SandboxInput {
  containerName: string;
  taskName: string;
  image: string;
  workspace: WorkspaceSource;
  uid: number;
  gid: number;
  limits: Limits;
  env: Record<string, string>;
  labels: Record<string, string>;
  /** Host directory with the gateway's socket, when the task has a network. */
  egressSocketDir?: string;
  /**
   * The task has a network, and no host socket can reach the sandbox (a remote engine): the proxy
   * port is served by moat's bridge over exec streams (service/egress-bridge.ts), and the trust
   * files go to a tmpfs at the same place the local path mounts them.
   */
  egressBridged?: boolean;
  /** Host path of moat's handover helper (native/handoff.c), when this install built it. */
  handoffHelper?: string;
  /** Host directory with the task's ssh-agent socket. */
  sshAgentDir?: string;
  readOnlyMounts?: Array<{ source: string; target: string }>;
  /** gVisor's runtime name in the engine, for a task under gVisor (absent: runc). */
  gvisorRuntime?: string;
}

/**
 * Where programs in the sandbox find the gateway: a socket on the sandbox's own loopback that the
 * gateway accepts on (handed over by moat's helper), or, where the helper was not built, a relay
 * from that port to the gateway's unix socket.
 */
export const PROXY_PORT = 3128;
const EGRESS_TARGET = '/moat/egress';
const HELPER_TARGET = '/moat/bin/moat-handoff';

/** What the engine keeps of a container's output: it is on the host, outside the task's disk cap. */
export const CONTAINER_LOG = { maxBytes: 10 * 1024 ** 2, files: 3 } as const;

/**
 * The hardening every task gets. Nothing here is configurable upward: limits come from the
 * (already narrowed) config, everything else is fixed.
 */
export function sandboxSpec(input: SandboxInput): SandboxSpec {
  const { uid, gid, limits } = input;
  return {
    name: input.containerName,
    image: input.image,
    hostname: `moat-${input.taskName}`.slice(0, 63),
    user: `${uid}:${gid}`,
    workdir: WORKSPACE_DIR,
    // Keeps the container alive between execs; the engine's init (tini) reaps zombies. With a
    // network, the keep-alive is moat's helper, which hands the proxy port's listening socket to
    // the gateway and keeps that handover alive (or the socat relay, without the helper): the
    // sandbox still has no network interface, so programs that ignore the proxy variables get nowhere.
    // A time limit wraps it in `timeout`: when it fires, the container's main process ends and the
    // kernel ends every process in it. Killing `timeout` early only stops the task sooner.
    command: keepAlive(limits, input.egressSocketDir === undefined ? 'none' : input.handoffHelper ? 'handoff' : 'relay'),
    egressMount: input.egressSocketDir ? { source: input.egressSocketDir, target: EGRESS_TARGET } : undefined,
    helperMount: input.egressSocketDir && input.handoffHelper ? { source: input.handoffHelper, target: HELPER_TARGET } : undefined,
    sshMount: input.sshAgentDir ? { source: input.sshAgentDir, target: '/moat/ssh' } : undefined,
    readOnlyMounts: input.readOnlyMounts ?? [],
    env: {
      // The user's grants first: moat's own variables must win so the sandbox stays consistent.
      ...input.env,
      ...(input.egressSocketDir || input.egressBridged ? proxyEnv() : {}),
      HOME: SANDBOX_HOME,
      USER: 'agent',
      LOGNAME: 'agent',
      PATH: SANDBOX_PATH,
      LANG: 'C.UTF-8',
      MOAT_TASK: input.taskName,
      MOAT_SANDBOX: '1',
    },
    labels: input.labels,
    workspace: input.workspace,
    // `exec` because Docker's tmpfs default is noexec, and toolchains run what they write there:
    // `go test` binaries in /tmp, what pip, go install and cargo install put in ~/.local/bin. noexec
    // would protect nothing: the sandbox runs arbitrary code by design, and /workspace is executable.
    // The bridged egress folder too: moat puts moat-why there (service/egress-bridge.ts).
    tmpfs: {
      '/tmp': `rw,exec,nosuid,nodev,size=${limits.tmpBytes},mode=1777`,
      [SANDBOX_HOME]: `rw,exec,nosuid,nodev,size=${limits.homeBytes},uid=${uid},gid=${gid},mode=0700`,
      '/run': 'rw,nosuid,nodev,noexec,size=16m,mode=0755',
      '/var/tmp': `rw,exec,nosuid,nodev,size=${Math.min(limits.tmpBytes, 64 * 1024 ** 2)},mode=1777`,
      ...(input.egressBridged && !input.egressSocketDir ? { [EGRESS_TARGET]: `rw,exec,nosuid,nodev,size=4m,uid=${uid},gid=${gid},mode=0755` } : {}),
    },
    limits,
    readOnlyRoot: true,
    capDrop: ['ALL'],
    noNewPrivileges: true,
    init: true,
    network: 'none',
    isolation: input.gvisorRuntime ? { kind: 'gvisor', runtime: input.gvisorRuntime } : { kind: 'runc' },
    logMaxBytes: CONTAINER_LOG.maxBytes,
    logMaxFiles: CONTAINER_LOG.files,
  };
}

function proxyEnv(): Record<string, string> {
  const proxy = `http://127.0.0.1:${PROXY_PORT}`;
  const local = 'localhost,127.0.0.1,::1';
  // NODE_USE_ENV_PROXY: Node's own fetch and http (22.21+) use the variables too, and so meet the gateway (and its refusals).
  return { HTTP_PROXY: proxy, HTTPS_PROXY: proxy, http_proxy: proxy, https_proxy: proxy, NO_PROXY: local, no_proxy: local, NODE_USE_ENV_PROXY: '1' };
}

/** Exit status of the keep-alive when the idle limit ends the task (shown by `moat ls`). */
export const IDLE_EXIT = 3;

/**
 * The container's main process. With an idle limit it is a small watchdog: every five seconds it
 * looks for a process that is neither the engine's init nor itself and its children (a command
 * moat runs, or one the agent left running); after `idleSeconds` without one it exits, and the
 * kernel ends the task. Killing it early only stops the task sooner.
 */
function keepAlive(limits: Limits, way: 'none' | 'handoff' | 'relay'): string[] {
  const egress = way !== 'none';
  const socat = ['socat', `TCP-LISTEN:${PROXY_PORT},bind=127.0.0.1,reuseaddr,fork,backlog=4096`, `UNIX-CONNECT:${EGRESS_TARGET}/p.sock`];
  // The helper falls back to the relay itself if the gateway cannot take its socket.
  const relay = way === 'handoff' ? [HELPER_TARGET, `${EGRESS_TARGET}/h.sock`, String(PROXY_PORT), '--', ...socat] : socat;
  const timeout = limits.timeoutSeconds > 0 ? ['timeout', '-s', 'KILL', String(limits.timeoutSeconds)] : [];
  const idle = limits.idleSeconds ?? 0;
  if (idle <= 0) return [...timeout, ...(egress ? relay : ['sleep', 'infinity'])];
  const watchdog = [
    egress ? '"$@" &' : ':',
    'idle=0',
    'while sleep 5; do',
    // Busy: a process moat or the user started (parent outside, 0) or one left running (parent init).
    // Not itself: in a pod sharing its pid namespace with the pause process, its parent is outside too.
    "  busy=$(ps -e -o pid=,ppid= | awk -v me=$$ '($2 == 0 && $1 != 1 && $1 != me) || ($2 == 1 && $1 != me)' | wc -l)",
    '  if [ "$busy" -gt 0 ]; then idle=0; else idle=$((idle + 5)); fi',
    `  if [ "$idle" -ge ${idle} ]; then exit ${IDLE_EXIT}; fi`,
    'done',
  ].join('\n');
  return [...timeout, 'sh', '-c', watchdog, 'moat-keepalive', ...(egress ? relay : [])];
}
