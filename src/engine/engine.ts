import type { Readable, Writable } from 'node:stream';
import type { SandboxSpec } from '../domain/sandbox-spec.js';
import type { LimitEnforcement } from '../domain/limit-enforcement.js';

/**
 * What moat needs from a container engine, in moat's terms: make a sandbox from a {@link SandboxSpec},
 * start/stop/remove it, exec in it with streams, give it a workspace volume, read its stats and why
 * it died, list what moat made by label. Docker and Podman (its Docker-compatible API) implement it,
 * local (unix socket) or remote (tcp://, ssh://), and Kubernetes (a sandbox is a Pod).
 */
export interface ContainerEngine {
  readonly kind: EngineKind;
  /** Where the engine was found (socket path or URL), for messages and `doctor`. */
  readonly endpoint: string;
  /** Host-local shortcuts this engine allows; every feature also works, or is refused clearly, without them. */
  readonly capabilities: EngineCapabilities;
  /**
   * Files the engine was opened from whose edits change where it points (a kubeconfig: its current
   * context, server, credentials). A long-lived process that keeps the engine opens it again when
   * one of them changed (service/process-caches.ts).
   */
  readonly sourceFiles?: readonly string[];
  info(): Promise<EngineInfo>;
  /**
   * A cluster's nodes and whether each takes pods (Kubernetes only; undefined when they cannot be
   * listed): the same reading as info().nodes, alone, for `ls` to say when a task's node is not Ready.
   */
  nodes?(): Promise<NodeHealth[] | undefined>;
  /** Cheap reachability check (the engine's ping), before anything is made. */
  ping(): Promise<void>;
  imageId(ref: string): Promise<string | undefined>;
  buildImage(input: BuildInput): Promise<void>;
  createContainer(spec: SandboxSpec): Promise<string>;
  startContainer(id: string): Promise<void>;
  inspectContainer(idOrName: string): Promise<ContainerInfo | undefined>;
  stopContainer(id: string, timeoutSeconds: number): Promise<void>;
  removeContainer(id: string): Promise<void>;
  listContainers(labels: Record<string, string>): Promise<ContainerInfo[]>;
  /**
   * A task's workspace volume, kept by the engine, labelled, its root owned by `owner` (made ready
   * by a short-lived container of `image` with no capability but CHOWN, no network; a capped one by mkfs). Idempotent.
   */
  createVolume(name: string, labels: Record<string, string>, owner: { uid: number; gid: number; image: string }, cap?: DiskCap): Promise<void>;
  /** Whether {@link createVolume} can enforce a `cap` on this engine, and if not, why (said by `up`, `doctor`, `ls`). */
  diskCapSupport(helperImage: string): Promise<DiskCapSupport>;
  listVolumes(labels: Record<string, string>): Promise<Array<{ name: string; labels: Record<string, string> }>>;
  /**
   * `disk`: the volume was to be capped, and its helper image (the user's base image). A capped
   * volume's disk is attached before the volume is made: moat killed in between leaves a disk with
   * no volume to name it, which only this tells the engine to look for.
   */
  removeVolume(name: string, disk?: { helperImage: string }): Promise<void>;
  /**
   * Lets go of what a volume holds on the engine's host while no container mounts it (a capped
   * volume's loop device, for a stopped task); its content stays, and the next container gets it back.
   */
  parkVolume(name: string): Promise<void>;
  /** Streams a command: the caller's streams are wired straight through. */
  exec(id: string, command: ExecCommand, io: ExecIO): Promise<number>;
  /** Runs a command and collects its output, up to `maxBytes` of stdout. */
  execCapture(id: string, command: ExecCommand, maxBytes?: number): Promise<{ exitCode: number; stdout: Buffer; stderr: string }>;
  /** One sample of a running container's resource use. */
  stats(id: string): Promise<ContainerStats | undefined>;
  /** The container's output; `follow` keeps streaming until the container stops or `signal` aborts. */
  logs(id: string, options: LogOptions, out: Writable, err: Writable): Promise<void>;
  /** The cgroup limits this engine cannot enforce (rootless Podman without delegated controllers); absent: all are enforced. */
  limitEnforcement?(): Promise<LimitEnforcement>;
}

/**
 * Shortcuts that need the engine to share moat's host. A local engine on a unix socket of this
 * host offers them; a remote one (tcp://, ssh://) offers none.
 */
export interface EngineCapabilities {
  /**
   * Host folders can be bind-mounted into a sandbox: the workspace is a host folder (moat reads the
   * snapshot a command leaves without an exec), the gateway's socket and moat's handover helper
   * (SCM_RIGHTS) reach the sandbox, the task's ssh-agent and the user's read-only mounts too.
   * Without it the workspace is an engine volume, seeded and read through exec.
   */
  hostMounts: boolean;
  /** The engine's containers' cgroup files are on this host (exit reasons read from kernel counters). */
  hostCgroups: boolean;
  /**
   * A workspace volume outlives the sandbox that used it (Docker and Podman volumes). Not so on
   * Kubernetes, where the workspace is an emptyDir of the task's pod: once the pod is gone, what
   * `down` brought home (commits and the snapshot of uncommitted work) is all there is, and the
   * next pod's workspace is seeded from it.
   */
  workspaceOutlivesSandbox: boolean;
}

export type EngineKind = 'docker' | 'podman' | 'kubernetes';

/** Local engines share the host; remote ones share nothing but their API. */
export function capabilitiesOf(transport: 'unix' | 'tcp' | 'ssh'): EngineCapabilities {
  const local = transport === 'unix';
  return { hostMounts: local, hostCgroups: local, workspaceOutlivesSandbox: true };
}

export interface LogOptions {
  follow: boolean;
  tail?: number;
  /** Ends a followed stream (a dashboard page that left). */
  signal?: AbortSignal;
}

export interface EngineInfo {
  kind: EngineKind;
  version: string;
  apiVersion: string;
  os: string;
  kernel: string;
  storageDriver: string;
  cgroupVersion: string;
  cgroupDriver: string;
  securityOptions: string[];
  rootless: boolean;
  runcVersion?: string;
  /** A cluster's nodes (Kubernetes only), and whether each takes pods: doctor says which do not. */
  nodes?: Array<{ name: string; ready: boolean; why?: string }>;
}

export interface BuildInput {
  contextDir: string;
  files: string[];
  /** A ready tar of the context (e.g. from `git archive`) instead of contextDir/files. */
  tar?: NodeJS.ReadableStream;
  /** Path of the Dockerfile inside the context (default "Dockerfile"). */
  dockerfile?: string;
  tag: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  onProgress?: (line: string) => void;
  /** Aborting it ends the build in the engine (the connection closes, the daemon cancels). */
  signal?: AbortSignal;
}

export interface ContainerStats {
  cpuPercent: number;
  memoryBytes: number;
  memoryLimitBytes: number;
  pids: number;
}

export interface ContainerInfo {
  id: string;
  name: string;
  image: string;
  state: 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead' | string;
  running: boolean;
  exitCode?: number;
  oomKilled?: boolean;
  startedAt?: string;
  finishedAt?: string;
  labels: Record<string, string>;
  /** The node the sandbox was placed on (a cluster's engine only). */
  node?: string;
}

/** A cluster node, and whether it takes pods (its Ready condition), with the cluster's words when not. */
export type NodeHealth = NonNullable<EngineInfo['nodes']>[number];

export interface ExecCommand {
  cmd: string[];
  user: string;
  workdir?: string;
  env?: Record<string, string>;
  tty?: boolean;
}

export interface ExecIO {
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  /** Without a TTY: a way to be told when the caller is interrupted (Ctrl-C), to pass it on. */
  onInterrupt?: (listener: (signal: 'INT' | 'TERM') => void) => () => void;
  /** For a TTY: current size, and a way to be told of changes. */
  size?: () => { rows: number; columns: number };
  onResize?: (listener: () => void) => () => void;
  /**
   * End the command (status 137, as killed) when the container stops, checked each second: an exec
   * into a gVisor sandbox that died (its pids cgroup full, say) never returns from the engine.
   */
  endWithContainer?: boolean;
}

/**
 * A workspace volume of fixed size, made by the engine (no root needed of moat): writes past
 * `bytes` fail with ENOSPC inside the sandbox. `helperImage` runs the short-lived helper that makes
 * it: the user's base image, never a task's (a repository chooses those).
 */
export interface DiskCap {
  bytes: number;
  helperImage: string;
}

/** `how`: how the cap holds where it is not an ext4 volume that answers ENOSPC (said by `doctor` and `ls`). */
export type DiskCapSupport = { ok: true; how?: string } | { ok: false; why: string };
