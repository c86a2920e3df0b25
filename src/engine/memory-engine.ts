import { randomBytes } from 'node:crypto';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import type { SandboxSpec } from '../domain/sandbox-spec.js';
import type {
  BuildInput,
  ContainerEngine,
  ContainerInfo,
  ContainerStats,
  DiskCap,
  DiskCapSupport,
  EngineCapabilities,
  EngineInfo,
  EngineKind,
  ExecCommand,
  ExecIO,
} from './engine.js';

/**
 * A container engine kept in memory: the port ({@link ContainerEngine}) without dockerd, for unit
 * tests of the services. It keeps what an engine keeps (containers made from a {@link SandboxSpec},
 * their state, exit codes and OOM kills, labelled volumes, images, logs) and refuses what an engine
 * refuses (a name taken, an exec in a stopped container, a volume in use). What a command does in
 * a sandbox is the test's to say: it registers exec handlers; a command nobody handles exits 127.
 */
export class MemoryEngine implements ContainerEngine {
  /** Which engine's words it stands for (hints differ: Podman's images come from Docker by save | load). */
  readonly kind: EngineKind;
  readonly endpoint: string;
  readonly capabilities: EngineCapabilities;
  readonly containers = new Map<string, MemoryContainer>();
  readonly volumes = new Map<string, MemoryVolume>();
  readonly images = new Map<string, string>();
  /** Every call that changed something, in order ("create moat-x", "exec moat-x sh -c …"), for assertions on order. */
  readonly journal: string[] = [];
  private readonly handlers: Array<{ match: (cmd: string[]) => boolean; run: ExecHandler }> = [];
  private readonly faults = new Map<FaultPoint, Array<(subject: string) => Error | undefined>>();

  constructor(options: { capabilities?: Partial<EngineCapabilities>; endpoint?: string; images?: string[]; kind?: EngineKind } = {}) {
    this.kind = options.kind ?? 'docker';
    // Shares nothing with moat's host by default, like a remote engine: every feature goes through the port.
    this.capabilities = { hostMounts: false, hostCgroups: false, workspaceOutlivesSandbox: true, ...options.capabilities };
    this.endpoint = options.endpoint ?? 'memory://test';
    for (const ref of options.images ?? []) this.addImage(ref);
    // The kernel's own files, as moat reads them from inside a sandbox whose cgroups it cannot see.
    this.onExec(
      (cmd) => cmd[0] === '/bin/cat' && cmd.slice(1).every((file) => file.startsWith('/sys/fs/cgroup/')),
      ({ container, stdout }) => {
        stdout.write(`oom ${container.counters.oomKills}\noom_kill ${container.counters.oomKills}\n`);
        stdout.write(`max ${container.counters.pidsMax}\n`);
        return 0;
      },
    );
  }

  addImage(ref: string): string {
    const id = `sha256:${randomBytes(32).toString('hex')}`;
    this.images.set(ref, id);
    return id;
  }

  /**
   * What a command does: the first handler whose `match` accepts the command runs it (newest first,
   * so a test can override a default). It writes to the call's streams and returns the exit status.
   */
  onExec(match: (cmd: string[]) => boolean, run: ExecHandler): void {
    this.handlers.unshift({ match, run });
  }

  /** The next calls at `point` whose subject (container or volume name, command) `check` accepts fail with its error. */
  failAt(point: FaultPoint, check: (subject: string) => Error | undefined): void {
    this.faults.set(point, [...(this.faults.get(point) ?? []), check]);
  }

  /** The container's main process died (as the kernel's OOM killer or a time limit would end it). */
  kill(id: string, exitCode: number, options: { oom?: boolean } = {}): void {
    const container = this.require(id);
    container.state = 'exited';
    container.exitCode = exitCode;
    container.oomKilled = options.oom ?? false;
    if (options.oom) container.counters.oomKills += 1;
    container.finishedAt = new Date().toISOString();
  }

  /** The container by id or name (what the engine would find). */
  find(idOrName: string): MemoryContainer | undefined {
    return this.containers.get(idOrName) ?? [...this.containers.values()].find((c) => c.spec.name === idOrName || c.id.startsWith(idOrName));
  }

  async info(): Promise<EngineInfo> {
    return {
      kind: this.kind,
      version: 'memory',
      apiVersion: 'memory',
      os: 'memory',
      kernel: 'none',
      storageDriver: 'memory',
      cgroupVersion: '2',
      cgroupDriver: 'none',
      securityOptions: [],
      rootless: false,
    };
  }

  async ping(): Promise<void> {
    this.fault('ping', this.endpoint);
  }

  async imageId(ref: string): Promise<string | undefined> {
    return this.images.get(ref);
  }

  async buildImage(input: BuildInput): Promise<void> {
    this.fault('build', input.tag);
    if (input.signal?.aborted) throw input.signal.reason;
    this.journal.push(`build ${input.tag}`);
    this.addImage(input.tag);
  }

  async createContainer(spec: SandboxSpec): Promise<string> {
    this.fault('create', spec.name);
    if (!this.images.has(spec.image)) throw engineError(404, `No such image: ${spec.image}`);
    if (this.find(spec.name)?.spec.name === spec.name) throw engineError(409, `Conflict. The container name "/${spec.name}" is already in use`);
    if (spec.workspace.kind === 'volume' && !this.volumes.has(spec.workspace.name)) {
      // Docker would make an unlabelled volume on the fly: moat always makes it first, labelled.
      throw engineError(404, `volume ${spec.workspace.name} does not exist`);
    }
    const id = randomBytes(32).toString('hex');
    this.containers.set(id, {
      id,
      spec: structuredClone(spec),
      state: 'created',
      exitCode: 0,
      oomKilled: false,
      counters: { oomKills: 0, pidsMax: 0 },
      logs: [],
      files: new Map(),
      execs: [],
    });
    this.journal.push(`create ${spec.name}`);
    return id;
  }

  async startContainer(id: string): Promise<void> {
    const container = this.require(id);
    this.fault('start', container.spec.name);
    container.state = 'running';
    container.startedAt = new Date().toISOString();
    this.journal.push(`start ${container.spec.name}`);
  }

  async inspectContainer(idOrName: string): Promise<ContainerInfo | undefined> {
    const container = this.find(idOrName);
    return container ? describe(container) : undefined;
  }

  async stopContainer(id: string): Promise<void> {
    const container = this.find(id);
    if (!container || container.state !== 'running') return;
    this.journal.push(`stop ${container.spec.name}`);
    this.kill(container.id, 137);
  }

  async removeContainer(id: string): Promise<void> {
    const container = this.find(id);
    if (!container) return;
    this.fault('remove', container.spec.name);
    this.journal.push(`remove ${container.spec.name}`);
    container.state = 'removing';
    this.containers.delete(container.id);
  }

  async listContainers(labels: Record<string, string>): Promise<ContainerInfo[]> {
    return [...this.containers.values()].filter((c) => matches(c.spec.labels, labels)).map(describe);
  }

  async createVolume(name: string, labels: Record<string, string>, owner: { uid: number; gid: number; image: string }, _cap?: DiskCap): Promise<void> {
    this.fault('createVolume', name);
    if (!this.images.has(owner.image)) throw engineError(404, `No such image: ${owner.image}`);
    if (this.volumes.has(name)) return;
    this.volumes.set(name, { name, labels: { ...labels }, owner: { uid: owner.uid, gid: owner.gid } });
    this.journal.push(`create volume ${name}`);
  }

  /** Nothing of a memory volume lives outside it. */
  async parkVolume(_name: string): Promise<void> {}

  /** Memory has no disk to cap: the services must say so, never claim a cap. */
  async diskCapSupport(_helperImage: string): Promise<DiskCapSupport> {
    return { ok: false, why: 'the in-memory engine has no disk' };
  }

  async listVolumes(labels: Record<string, string>): Promise<Array<{ name: string; labels: Record<string, string> }>> {
    return [...this.volumes.values()].filter((v) => matches(v.labels, labels)).map((v) => ({ name: v.name, labels: { ...v.labels } }));
  }

  async removeVolume(name: string): Promise<void> {
    if (!this.volumes.has(name)) return;
    this.fault('removeVolume', name);
    const user = [...this.containers.values()].find((c) => c.spec.workspace.kind === 'volume' && c.spec.workspace.name === name);
    if (user) throw engineError(409, `remove ${name}: volume is in use - [${user.id}]`);
    this.journal.push(`remove volume ${name}`);
    this.volumes.delete(name);
  }

  async exec(id: string, command: ExecCommand, io: ExecIO): Promise<number> {
    const container = this.find(id);
    if (!container) throw engineError(404, `No such container: ${id}`);
    if (container.state !== 'running') throw engineError(409, `Container ${container.id} is not running`);
    this.fault('exec', command.cmd.join(' '));
    const handler = this.handlers.find((h) => h.match(command.cmd));
    container.execs.push(command);
    // Scripts shortened, their arguments kept: what a test looks for ("moat-sync", the task branch).
    this.journal.push(`exec ${container.spec.name} ${command.cmd.map((arg) => (arg.length > 80 ? '<script>' : arg)).join(' ')}`);
    if (!handler) {
      io.stderr.write(`memory engine: no handler for ${JSON.stringify(command.cmd).slice(0, 200)}\n`);
      return 127;
    }
    return handler.run({ engine: this, container, command, stdin: io.stdin, stdout: io.stdout, stderr: io.stderr, io });
  }

  async execCapture(id: string, command: ExecCommand, maxBytes = 16 * 1024 * 1024): Promise<{ exitCode: number; stdout: Buffer; stderr: string }> {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    stdout.on('data', (chunk: Buffer) => out.push(chunk));
    stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const exitCode = await this.exec(id, command, { stdout, stderr });
    // The data events of what was written have run once the streams have ended.
    await Promise.all([stdout, stderr].map((s) => new Promise((resolve) => s.end(resolve))));
    return { exitCode, stdout: Buffer.concat(out).subarray(0, maxBytes), stderr: Buffer.concat(err).toString('utf8') };
  }

  async stats(id: string): Promise<ContainerStats | undefined> {
    const container = this.find(id);
    if (!container || container.state !== 'running') return undefined;
    const limits = container.spec.limits;
    return { cpuPercent: container.usage?.cpuPercent ?? 0, memoryBytes: container.usage?.memoryBytes ?? 0, memoryLimitBytes: limits.memoryBytes, pids: 1 };
  }

  async logs(id: string, options: { follow: boolean; tail?: number }, out: Writable, err: Writable): Promise<void> {
    const container = this.find(id);
    if (!container) throw engineError(404, `No such container: ${id}`);
    const lines = options.tail === undefined ? container.logs : container.logs.slice(-options.tail);
    for (const line of lines) (line.stream === 'stderr' ? err : out).write(line.text);
  }

  private require(id: string): MemoryContainer {
    const container = this.find(id);
    if (!container) throw engineError(404, `No such container: ${id}`);
    return container;
  }

  private fault(point: FaultPoint, subject: string): void {
    const checks = this.faults.get(point) ?? [];
    for (const [index, check] of checks.entries()) {
      const error = check(subject);
      if (!error) continue;
      checks.splice(index, 1);
      throw error;
    }
  }
}

/** Where a test can make the engine fail. */
export type FaultPoint = 'ping' | 'build' | 'create' | 'start' | 'remove' | 'createVolume' | 'removeVolume' | 'exec';

export interface MemoryContainer {
  id: string;
  /** The spec as the engine was given it: what the test checks the hardening on. */
  spec: SandboxSpec;
  state: 'created' | 'running' | 'exited' | 'removing';
  exitCode: number;
  oomKilled: boolean;
  startedAt?: string;
  finishedAt?: string;
  /** The kernel's counters of the container's cgroup (what moat reads to tell an OOM kill). */
  counters: { oomKills: number; pidsMax: number };
  usage?: { cpuPercent: number; memoryBytes: number };
  logs: Array<{ stream: 'stdout' | 'stderr'; text: string }>;
  /** Files handlers keep for the container (its tmpfs home, say). */
  files: Map<string, Buffer>;
  execs: ExecCommand[];
}

export interface MemoryVolume {
  name: string;
  labels: Record<string, string>;
  owner: { uid: number; gid: number };
}

export interface ExecCall {
  engine: MemoryEngine;
  container: MemoryContainer;
  command: ExecCommand;
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  /** The caller's streams and hooks as given (onInterrupt, size). */
  io: ExecIO;
}

export type ExecHandler = (call: ExecCall) => number | Promise<number>;

/** An error shaped like the engine client's (dockerode's), which moat reads the status code of. */
export function engineError(statusCode: number, message: string): Error {
  return Object.assign(new Error(`(HTTP code ${statusCode}) ${message}`), { statusCode, cause: { statusCode } });
}

function describe(c: MemoryContainer): ContainerInfo {
  return {
    id: c.id,
    name: c.spec.name,
    image: c.spec.image,
    state: c.state,
    running: c.state === 'running',
    exitCode: c.exitCode,
    oomKilled: c.oomKilled,
    startedAt: c.startedAt,
    finishedAt: c.finishedAt,
    labels: { ...c.spec.labels },
  };
}

function matches(have: Record<string, string>, wanted: Record<string, string>): boolean {
  return Object.entries(wanted).every(([key, value]) => (value === '' ? key in have : have[key] === value));
}
