import type { Readable, Writable } from 'node:stream';
import type { ContainerSpec } from '../domain/sandbox-spec.js';

/** What moat needs from a container engine. Docker and Podman (its Docker-compatible socket) implement it. */
export interface ContainerEngine {
  readonly kind: 'docker' | 'podman';
  /** Where the engine was found (socket path), for messages and `doctor`. */
  readonly endpoint: string;
  info(): Promise<EngineInfo>;
  /** Cheap reachability check (the engine's ping), before anything is made. */
  ping(): Promise<void>;
  imageId(ref: string): Promise<string | undefined>;
  buildImage(input: BuildInput): Promise<void>;
  createContainer(spec: ContainerSpec): Promise<string>;
  startContainer(id: string): Promise<void>;
  inspectContainer(idOrName: string): Promise<ContainerInfo | undefined>;
  stopContainer(id: string, timeoutSeconds: number): Promise<void>;
  removeContainer(id: string): Promise<void>;
  listContainers(labels: Record<string, string>): Promise<ContainerInfo[]>;
  listNetworks(labels: Record<string, string>): Promise<Array<{ id: string; name: string; labels: Record<string, string> }>>;
  listVolumes(labels: Record<string, string>): Promise<Array<{ name: string; labels: Record<string, string> }>>;
  removeNetwork(id: string): Promise<void>;
  removeVolume(name: string): Promise<void>;
  /** Streams a command: the caller's streams are wired straight through. */
  exec(id: string, command: ExecCommand, io: ExecIO): Promise<number>;
  /** Runs a command and collects its output, up to `maxBytes` of stdout. */
  execCapture(id: string, command: ExecCommand, maxBytes?: number): Promise<{ exitCode: number; stdout: Buffer; stderr: string }>;
  /** One sample of a running container's resource use. */
  stats(id: string): Promise<ContainerStats | undefined>;
  logs(id: string, options: { follow: boolean; tail?: number }, out: Writable, err: Writable): Promise<void>;
}

export interface EngineInfo {
  kind: 'docker' | 'podman';
  version: string;
  apiVersion: string;
  os: string;
  kernel: string;
  storageDriver: string;
  backingFilesystem?: string;
  cgroupVersion: string;
  cgroupDriver: string;
  securityOptions: string[];
  runtimes: Record<string, { version?: string }>;
  defaultRuntime: string;
  rootless: boolean;
  runcVersion?: string;
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
  /** Raw engine inspect data, for tests and `doctor`. */
  raw?: unknown;
}

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
}
