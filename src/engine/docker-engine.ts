import Docker from 'dockerode';
import { PassThrough, type Writable } from 'node:stream';
import { MoatError } from '../errors.js';
import { LABEL } from '../domain/labels.js';
import { WORKSPACE_DIR, type SandboxSpec } from '../domain/sandbox-spec.js';
import { gvisorHostPids } from '../domain/isolation.js';
import {
  capabilitiesOf,
  type BuildInput,
  type ContainerEngine,
  type ContainerInfo,
  type DiskCap,
  type DiskCapSupport,
  type EngineCapabilities,
  type EngineInfo,
  type ExecCommand,
  type ExecIO,
  type LogOptions,
} from './engine.js';
import { connectionOptions, endpointName, type EngineEndpoint } from './find-engine.js';
import { DISK_HELPER_LABEL, DISK_LABEL, DockerDisks } from './docker-disk.js';
import { captureExec } from './exec-capture.js';

/** Docker Engine API adapter (also serves Podman's Docker-compatible socket). */
export class DockerEngine implements ContainerEngine {
  readonly kind: 'docker' | 'podman';
  readonly endpoint: string;
  readonly capabilities: EngineCapabilities;
  private readonly docker: Docker;
  private readonly disks: DockerDisks;
  /** Capped volumes this process attached just now: no need to check their device again before the first mount. */
  private readonly freshDisks = new Set<string>();
  /** Disks this process attached, by volume: removing the volume drops the disk even if the volume was never made (a rollback). */
  private readonly attachedDisks = new Map<string, string>();

  /** `client`: an API client of the engine's own dialect (Podman's); by default Docker's, from the endpoint. */
  constructor(endpoint: EngineEndpoint, client?: Docker) {
    this.kind = endpoint.kind;
    this.endpoint = endpointName(endpoint);
    this.capabilities = capabilitiesOf(endpoint.transport);
    this.docker = client ?? new Docker(connectionOptions(endpoint) as Docker.DockerOptions);
    this.disks = new DockerDisks(this.docker, this.endpoint, endpoint.transport === 'unix');
  }

  diskCapSupport(helperImage: string): Promise<DiskCapSupport> {
    return this.disks.supported(helperImage);
  }

  async info(): Promise<EngineInfo> {
    const [info, version] = await Promise.all([this.call(() => this.docker.info()), this.call(() => this.docker.version())]);
    const runc = (version.Components as Array<{ Name: string; Version: string }> | undefined)?.find((c) => c.Name.toLowerCase() === 'runc')?.Version;
    return {
      kind: this.kind,
      version: version.Version,
      apiVersion: version.ApiVersion,
      os: info.OperatingSystem ?? '',
      kernel: info.KernelVersion ?? '',
      storageDriver: info.Driver ?? '',
      cgroupVersion: String(info.CgroupVersion ?? ''),
      cgroupDriver: info.CgroupDriver ?? '',
      securityOptions: info.SecurityOptions ?? [],
      rootless: (info.SecurityOptions ?? []).some((opt: string) => opt.includes('rootless')),
      runcVersion: runc,
    };
  }

  async ping(): Promise<void> {
    await this.call(() => this.docker.ping(), 'reach the engine');
  }

  async imageId(ref: string): Promise<string | undefined> {
    try {
      const image = await this.docker.getImage(ref).inspect();
      return image.Id;
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.wrap(error, `inspect image ${ref}`);
    }
  }

  async buildImage(input: BuildInput): Promise<void> {
    let stream: NodeJS.ReadableStream;
    try {
      stream = await this.docker.buildImage(input.tar ?? { context: input.contextDir, src: input.files }, {
        t: input.tag,
        buildargs: input.buildArgs,
        labels: input.labels,
        rm: true,
        forcerm: true,
        pull: false,
        ...(input.dockerfile ? { dockerfile: input.dockerfile } : {}),
        ...(input.signal ? { abortSignal: input.signal } : {}),
      });
    } catch (error) {
      throw this.wrap(error, `build image ${input.tag}`);
    }
    const tail: string[] = [];
    let step = '';
    await new Promise<void>((resolve, reject) => {
      this.docker.modem.followProgress(
        stream,
        (error: Error | null, output: Array<{ error?: string; errorDetail?: { message?: string } }>) => {
          const failed = error?.message ?? output.find((item) => item.error)?.error;
          if (failed) {
            const lines = tail.slice(-12).map((l) => `  | ${l.slice(0, 200)}`);
            reject(
              new MoatError(
                'E_IMAGE_BUILD',
                `building ${input.tag} failed at ${step ? `"${step.slice(0, 160)}"` : 'an unknown step'}: ${failed.trim().split('\n').pop()}`,
                {
                  hint: 'the log tail is above; fix the template, Dockerfile or base image, then run the command again',
                  details: { step, logTail: tail.slice(-20), lines: [`building ${input.tag} failed`, ...lines] },
                },
              ),
            );
          } else resolve();
        },
        (event: { stream?: string; status?: string }) => {
          const line = (event.stream ?? event.status ?? '').trimEnd();
          if (!line) return;
          tail.push(line);
          if (/^Step \d+\/\d+ :/.test(line)) step = line;
          if (tail.length > 50) tail.shift();
          input.onProgress?.(line);
        },
      );
    });
  }

  async createContainer(spec: SandboxSpec): Promise<string> {
    const { limits } = spec;
    if (spec.workspace.kind === 'host' && !this.capabilities.hostMounts) {
      throw new MoatError('E_INTERNAL', `the engine at ${this.endpoint} cannot see host folders; the workspace must be a volume`);
    }
    const hostOnly = [spec.egressMount, spec.helperMount, spec.sshMount, ...spec.readOnlyMounts].filter((m) => m !== undefined);
    if (hostOnly.length > 0 && !this.capabilities.hostMounts) {
      throw new MoatError('E_INTERNAL', `the engine at ${this.endpoint} cannot see host folders (${hostOnly.map((m) => m.target).join(', ')})`);
    }
    if (spec.workspace.kind === 'volume') await this.call(() => this.recheckDisk((spec.workspace as { name: string }).name), 'check the workspace disk');
    const workspace =
      spec.workspace.kind === 'host'
        ? { Type: 'bind' as const, Source: spec.workspace.path, Target: WORKSPACE_DIR, ReadOnly: false, BindOptions: { Propagation: 'rprivate' as const } }
        : { Type: 'volume' as const, Source: spec.workspace.name, Target: WORKSPACE_DIR, ReadOnly: false };
    try {
      const container = await this.docker.createContainer({
        name: spec.name,
        Image: spec.image,
        Hostname: spec.hostname,
        User: spec.user,
        WorkingDir: spec.workdir,
        Cmd: spec.command,
        Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
        Labels: spec.labels,
        NetworkDisabled: spec.network === 'none',
        StopSignal: 'SIGTERM',
        HostConfig: {
          Mounts: [
            workspace,
            ...hostOnly.map((m) => ({
              Type: 'bind' as const,
              Source: m.source,
              Target: m.target,
              ReadOnly: true,
              BindOptions: { Propagation: 'rprivate' as const },
            })),
          ],
          Tmpfs: spec.tmpfs,
          ReadonlyRootfs: spec.readOnlyRoot,
          CapDrop: spec.capDrop,
          SecurityOpt: spec.noNewPrivileges ? ['no-new-privileges:true'] : [],
          Init: spec.init,
          NetworkMode: spec.network,
          Memory: limits.memoryBytes,
          MemorySwap: limits.memoryBytes,
          NanoCpus: Math.round(limits.cpus * 1e9),
          ...runtimeOf(spec),
          IpcMode: 'private',
          ShmSize: 64 * 1024 * 1024,
          OomScoreAdj: 500,
          Privileged: false,
          LogConfig: { Type: 'json-file', Config: { 'max-size': String(spec.logMaxBytes), 'max-file': String(spec.logMaxFiles) } },
          RestartPolicy: { Name: 'no' },
        },
      });
      return container.id;
    } catch (error) {
      throw this.wrap(error, `create container ${spec.name}`);
    }
  }

  async startContainer(id: string): Promise<void> {
    await this.call(() => this.docker.getContainer(id).start(), `start container ${id.slice(0, 12)}`);
  }

  async inspectContainer(idOrName: string): Promise<ContainerInfo | undefined> {
    try {
      const data = await this.docker.getContainer(idOrName).inspect();
      return {
        id: data.Id,
        name: data.Name.replace(/^\//, ''),
        image: data.Config.Image,
        state: data.State.Status,
        running: data.State.Running,
        exitCode: data.State.ExitCode,
        oomKilled: data.State.OOMKilled,
        startedAt: data.State.StartedAt,
        finishedAt: data.State.FinishedAt,
        labels: data.Config.Labels ?? {},
      };
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.wrap(error, `inspect container ${idOrName}`);
    }
  }

  async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    try {
      await this.docker.getContainer(id).stop({ t: timeoutSeconds });
    } catch (error) {
      // 304: already stopped; 404: already gone. Both are the state we wanted.
      if (statusOf(error) === 304 || statusOf(error) === 404) return;
      throw this.wrap(error, `stop container ${id.slice(0, 12)}`);
    }
  }

  async removeContainer(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (error) {
      if (statusOf(error) === 404) return;
      // 409 "removal already in progress" is success for us too.
      if (statusOf(error) === 409 && /already in progress/.test(String((error as Error).message))) return;
      throw this.wrap(error, `remove container ${id.slice(0, 12)}`);
    }
  }

  async listContainers(labels: Record<string, string>): Promise<ContainerInfo[]> {
    const list = await this.call(() => this.docker.listContainers({ all: true, filters: { label: labelFilters(labels) } }));
    return list.map((c) => ({
      id: c.Id,
      name: (c.Names[0] ?? '').replace(/^\//, ''),
      image: c.Image,
      state: c.State,
      running: c.State === 'running',
      labels: c.Labels ?? {},
    }));
  }

  async createVolume(name: string, labels: Record<string, string>, owner: { uid: number; gid: number; image: string }, cap?: DiskCap): Promise<void> {
    if (cap) {
      this.attachedDisks.set(name, cap.helperImage);
      await this.call(() => this.disks.create(name, { ...labels, [DISK_HELPER_LABEL]: cap.helperImage }, cap, owner), `create the capped volume ${name}`);
      this.freshDisks.add(name);
      // mkfs made its root the sandbox user's (docker-disk.ts): no helper to chown it.
      return;
    }
    const existing = await this.docker
      .getVolume(name)
      .inspect()
      .catch((error: unknown) => {
        if (statusOf(error) === 404) return undefined;
        throw this.wrap(error, `inspect volume ${name}`);
      });
    if (!existing) await this.call(() => this.docker.createVolume({ Name: name, Labels: labels }), `create volume ${name}`);
    // A fresh volume's root belongs to root: a container whose only power is chown gives it to
    // the sandbox user (the sandbox itself has no capability at all). No network, nothing else mounted.
    const chown = await this.call(
      () =>
        this.docker.createContainer({
          Image: owner.image,
          User: '0:0',
          Cmd: ['/bin/chown', `${owner.uid}:${owner.gid}`, '/v'],
          Labels: { ...labels, [LABEL.role]: 'helper' },
          NetworkDisabled: true,
          HostConfig: {
            Mounts: [{ Type: 'volume', Source: name, Target: '/v' }],
            CapDrop: ['ALL'],
            CapAdd: ['CHOWN'],
            SecurityOpt: ['no-new-privileges:true'],
            ReadonlyRootfs: true,
            NetworkMode: 'none',
            Privileged: false,
          },
        }),
      `prepare volume ${name}`,
    );
    try {
      await this.call(() => chown.start(), `prepare volume ${name}`);
      const { StatusCode } = (await this.call(() => chown.wait(), `prepare volume ${name}`)) as { StatusCode: number };
      if (StatusCode !== 0)
        throw new MoatError('E_ENGINE_FAILED', `could not prepare volume ${name}: chown exited ${StatusCode}`, { hint: 'check the engine with `moat doctor`' });
    } finally {
      await chown.remove({ force: true }).catch(() => undefined);
    }
  }

  async listVolumes(labels: Record<string, string>) {
    const list = await this.call(() => this.docker.listVolumes({ filters: { label: labelFilters(labels) } }));
    return (list.Volumes ?? []).map((v) => ({ name: v.Name, labels: v.Labels ?? {} }));
  }

  async removeVolume(name: string, disk?: { helperImage: string }): Promise<void> {
    const capped = await this.cappedVolume(name);
    this.freshDisks.delete(name);
    const helperImage = capped?.labels[DISK_HELPER_LABEL] ?? disk?.helperImage ?? this.attachedDisks.get(name);
    this.attachedDisks.delete(name);
    if (helperImage) return this.call(() => this.disks.remove(name, helperImage), `remove the capped volume ${name}`);
    await this.docker
      .getVolume(name)
      .remove()
      .catch((error: unknown) => {
        if (statusOf(error) !== 404) throw this.wrap(error, `remove volume ${name}`);
      });
  }

  /** A volume made with a cap: its labels (how it was made) and the loop device it names. */
  private async cappedVolume(name: string): Promise<{ device?: string; labels: Record<string, string> } | undefined> {
    const volume = (await this.docker
      .getVolume(name)
      .inspect()
      .catch(() => undefined)) as { Labels?: Record<string, string>; Options?: Record<string, string> } | undefined;
    if (!volume?.Labels?.[DISK_LABEL]) return undefined;
    return { device: volume.Options?.device, labels: volume.Labels };
  }

  /** Before a container mounts a capped volume: its device backs its image again (docker-disk.ts `ensure`). */
  private async recheckDisk(name: string): Promise<void> {
    if (this.freshDisks.delete(name)) return;
    const capped = await this.cappedVolume(name);
    if (capped) await this.disks.ensure(name, capped.labels, capped.device);
  }

  async parkVolume(name: string): Promise<void> {
    const capped = await this.cappedVolume(name);
    this.freshDisks.delete(name);
    if (capped?.labels[DISK_HELPER_LABEL]) await this.call(() => this.disks.park(name, capped.labels[DISK_HELPER_LABEL]!), `detach the disk of ${name}`);
  }

  async exec(id: string, command: ExecCommand, io: ExecIO): Promise<number> {
    const container = this.docker.getContainer(id);
    const tty = command.tty ?? false;
    const exec = await this.call(
      () =>
        container.exec({
          Cmd: command.cmd,
          User: command.user,
          WorkingDir: command.workdir,
          Env: Object.entries(command.env ?? {}).map(([key, value]) => `${key}=${value}`),
          AttachStdin: io.stdin !== undefined,
          AttachStdout: true,
          AttachStderr: true,
          Tty: tty,
        }),
      'exec in the task container',
    );
    // Engines with API 1.42+ take the first size with the start; older ones get the resize below.
    const size = tty && io.size ? io.size() : undefined;
    const startOptions = {
      hijack: true,
      stdin: io.stdin !== undefined,
      Tty: tty,
      ...(size && size.rows > 0 ? { ConsoleSize: [size.rows, size.columns] } : {}),
    };
    const stream = (await this.call(() => exec.start(startOptions), 'start exec')) as NodeJS.ReadWriteStream & {
      end(): void;
      destroy(): void;
      on(event: string, listener: (...args: unknown[]) => void): void;
    };
    const done = new Promise<void>((resolve) => {
      stream.on('end', () => resolve());
      stream.on('close', () => resolve());
      stream.on('error', () => resolve());
    });
    const containerGone = io.endWithContainer ? this.whenStopped(id, done) : undefined;
    if (tty) {
      stream.pipe(io.stdout);
    } else {
      this.docker.modem.demuxStream(stream, io.stdout, io.stderr);
    }
    let stopResize: (() => void) | undefined;
    if (tty && io.size) {
      const resize = () => {
        const { rows, columns } = io.size!();
        exec.resize({ h: rows, w: columns }).catch(() => undefined);
      };
      resize();
      stopResize = io.onResize?.(resize);
    }
    if (io.stdin) {
      io.stdin.on('data', (chunk: Buffer) => stream.write(chunk));
      // Half-close so the command sees EOF on its stdin while its output keeps flowing. Not with a
      // TTY: there the engine answers a closed stdin by closing the output too, and the command's
      // output (and exit status) would be lost; a terminal's EOF is a keystroke (Ctrl-D) anyway.
      if (!tty) io.stdin.on('end', () => stream.end());
    }
    const gone = await Promise.race([done.then(() => false), containerGone ?? new Promise<boolean>(() => undefined)]);
    stopResize?.();
    if (io.stdin) io.stdin.removeAllListeners('data');
    if (gone) {
      // The engine would keep this exec's stream open forever: end it, and report a killed command.
      stream.destroy();
      return EXIT_CONTAINER_GONE;
    }
    // The exec's exit code can lag the end of its stream by a moment.
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const state = await this.call(() => exec.inspect(), 'inspect exec');
      if (!state.Running && state.ExitCode !== null) return state.ExitCode;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new MoatError('E_ENGINE_FAILED', 'the engine did not report the exit status of the command', { hint: 'check the engine with `moat doctor`' });
  }

  execCapture(id: string, command: ExecCommand, maxBytes?: number): Promise<{ exitCode: number; stdout: Buffer; stderr: string }> {
    return captureExec(this, id, command, maxBytes);
  }

  async stats(id: string) {
    try {
      const s = (await this.docker.getContainer(id).stats({ stream: false })) as unknown as {
        cpu_stats: { cpu_usage: { total_usage: number }; system_cpu_usage?: number; online_cpus?: number };
        precpu_stats: { cpu_usage: { total_usage: number }; system_cpu_usage?: number };
        memory_stats: { usage?: number; limit?: number; stats?: { cache?: number; inactive_file?: number } };
        pids_stats: { current?: number };
      };
      const cpuDelta = s.cpu_stats.cpu_usage.total_usage - s.precpu_stats.cpu_usage.total_usage;
      const systemDelta = (s.cpu_stats.system_cpu_usage ?? 0) - (s.precpu_stats.system_cpu_usage ?? 0);
      const cpus = s.cpu_stats.online_cpus ?? 1;
      // Like `docker stats`: page cache the kernel can drop does not count as used.
      const cache = s.memory_stats.stats?.inactive_file ?? s.memory_stats.stats?.cache ?? 0;
      return {
        cpuPercent: systemDelta > 0 && cpuDelta > 0 ? (cpuDelta / systemDelta) * cpus * 100 : 0,
        memoryBytes: Math.max(0, (s.memory_stats.usage ?? 0) - cache),
        memoryLimitBytes: s.memory_stats.limit ?? 0,
        pids: s.pids_stats.current ?? 0,
      };
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.wrap(error, 'read container stats');
    }
  }

  async logs(id: string, options: LogOptions, out: Writable, err: Writable): Promise<void> {
    const container = this.docker.getContainer(id);
    const common = { stdout: true, stderr: true, timestamps: false, ...(options.tail !== undefined ? { tail: options.tail } : {}) };
    if (options.follow) {
      if (options.signal?.aborted) return;
      const stream = await this.call(() => container.logs({ ...common, follow: true }), 'read logs');
      this.docker.modem.demuxStream(stream, out, err);
      await new Promise<void>((resolve) => {
        const stop = () => {
          (stream as unknown as { destroy(): void }).destroy();
          resolve();
        };
        options.signal?.addEventListener('abort', stop, { once: true });
        stream.on('end', () => {
          options.signal?.removeEventListener('abort', stop);
          resolve();
        });
        stream.on('error', stop);
      });
    } else {
      const buffer = (await this.call(() => container.logs({ ...common, follow: false }), 'read logs')) as unknown as Buffer;
      const stream = new PassThrough();
      this.docker.modem.demuxStream(stream, out, err);
      stream.end(buffer);
      await new Promise((resolve) => stream.on('end', resolve));
    }
  }

  /** Resolves true once the container is no longer running (checked each second), false once `until` settles. */
  private async whenStopped(id: string, until: Promise<void>): Promise<boolean> {
    let settled = false;
    void until.then(() => (settled = true));
    while (!settled) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      if (settled) return false;
      const info = await this.inspectContainer(id).catch(() => undefined);
      if (!info?.running) return true;
    }
    return false;
  }

  private async call<T>(fn: () => Promise<T>, what = 'talk to the engine'): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.wrap(error, what);
    }
  }

  private wrap(error: unknown, what: string): MoatError {
    if ((error as { isMoatError?: boolean }).isMoatError) return error as MoatError;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES') {
      return new MoatError('E_ENGINE_PERMISSION', `permission denied on ${this.endpoint}`, {
        hint: 'add yourself to the docker group or use a rootless engine',
        cause: error,
      });
    }
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT' || code === 'ENOTFOUND') {
      const hint = this.capabilities.hostMounts
        ? 'start it: systemctl start docker (or run dockerd)'
        : `check that the engine at ${this.endpoint} runs and is reachable from here (DOCKER_HOST)`;
      return new MoatError('E_ENGINE_UNREACHABLE', `the container engine at ${this.endpoint} is not answering`, { hint, cause: error });
    }
    const message = String((error as { json?: { message?: string } }).json?.message ?? (error as Error).message ?? error).trim();
    if (statusOf(error) === 404 && /No such image|not found/i.test(message)) {
      return new MoatError('E_IMAGE_MISSING', `could not ${what}: ${message}`, {
        hint: 'build the base image: npm run base-image (scripts/build-base-image.sh)',
        cause: error,
      });
    }
    return new MoatError('E_ENGINE_FAILED', `could not ${what}: ${message}`, { hint: 'check the engine with `moat doctor`', cause: error });
  }
}

/**
 * The runtime and the process limits. Under runc the pids cgroup holds the user's figure. Under
 * gVisor runsc's own threads share that cgroup, so it gets room for them (gvisorHostPids), and the
 * user's figure is held inside by gVisor's kernel through RLIMIT_NPROC, which gVisor counts per
 * sandbox (the host kernel counts it per uid across containers, which is why runc does not use it).
 */
function runtimeOf(spec: SandboxSpec): { Runtime?: string; PidsLimit: number; Ulimits: Array<{ Name: string; Soft: number; Hard: number }> } {
  const { limits } = spec;
  const nofile = { Name: 'nofile', Soft: limits.nofile, Hard: limits.nofile };
  if (spec.isolation.kind === 'runc') return { PidsLimit: limits.pids, Ulimits: [nofile] };
  return {
    Runtime: spec.isolation.runtime,
    PidsLimit: gvisorHostPids(limits.pids),
    Ulimits: [nofile, { Name: 'nproc', Soft: limits.pids, Hard: limits.pids }],
  };
}

/** What a command reports when its container ended under it: killed, as by SIGKILL (128 + 9). */
const EXIT_CONTAINER_GONE = 137;

function statusOf(error: unknown): number | undefined {
  return (error as { statusCode?: number }).statusCode;
}

function labelFilters(labels: Record<string, string>): string[] {
  return Object.entries(labels).map(([key, value]) => (value === '' ? key : `${key}=${value}`));
}
