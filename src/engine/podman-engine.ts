import Docker from 'dockerode';
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { ContainerEngine, DiskCapSupport, EngineInfo, ExecCommand, ExecIO } from './engine.js';
import { DockerEngine } from './docker-engine.js';
import { MoatError } from '../errors.js';
import type { SandboxSpec } from '../domain/sandbox-spec.js';
import { CGROUP_LIMITS, type CgroupLimit, type LimitEnforcement } from '../domain/limit-enforcement.js';
import { connectionOptions, type EngineEndpoint } from './find-engine.js';
import { LABEL } from '../domain/labels.js';
import { WAIT_SCRIPT } from './exec-ahead-script.js';
import { envCommand } from './env-command.js';
import { dropAhead, openAhead, runTaken, takeAhead, type ExecStream, type PodmanExecAhead, type WaitingSinks } from './podman-exec-ahead.js';

/** The cgroup controller that holds each limit: where the container does not get it, the limit is not enforced. */
const CONTROLLER: Record<CgroupLimit, string> = { memory: 'memory', cpus: 'cpu', pids: 'pids' };

/**
 * Podman through its Docker-compatible API (the same dockerode client, pointed at Podman's socket):
 * everything is Docker's adapter but for what Podman does differently, which is said here.
 * - Containers are created by {@link PodmanClient} in Podman's dialect (runtime, rlimits, tmpfs options).
 * - Facts Docker's API does not carry (rootless, the cgroup controllers a container gets) come from libpod's /info.
 * Images are built by Podman's own build (buildah behind its /build endpoint), never pulled.
 */
export class PodmanEngine extends DockerEngine implements ContainerEngine {
  private readonly client: PodmanClient;

  /** Which containers get an exec opened ahead (podman-exec-ahead.ts): MOAT_PODMAN_EXEC_AHEAD. */
  private readonly execAhead: PodmanExecAhead;

  constructor(endpoint: EngineEndpoint, options: { execAhead?: PodmanExecAhead } = {}) {
    const client = new PodmanClient(connectionOptions(endpoint) as Docker.DockerOptions);
    super({ ...endpoint, kind: 'podman' }, client);
    this.client = client;
    this.execAhead = options.execAhead ?? 'spares';
    if (endpoint.transport === 'unix') client.localSocket = endpoint.socketPath;
  }

  /**
   * gVisor is not offered on Podman: its containers run with runc (crun fails on hybrid cgroups,
   * see PodmanClient), and a spec asking for gVisor would otherwise get runc without a word (found:
   * `dmesg` in such a task read the host's kernel log, "Operation not permitted"). Refused, so moat never
   * claims a kernel the sandbox does not have.
   */
  override async createContainer(spec: SandboxSpec): Promise<string> {
    if (spec.isolation.kind === 'gvisor') {
      throw new MoatError('E_ISOLATION_UNAVAILABLE', 'gVisor is not offered on Podman: moat runs Podman containers with runc', {
        hint: 'use Docker with runsc registered (as root: bash scripts/setup-gvisor.sh) for isolation: gvisor, or isolation: runc on Podman',
      });
    }
    const id = await super.createContainer(spec);
    // A pool's spare: its claim's first command will find an exec waiting (startContainer opens it).
    if (spec.labels[LABEL.madeAhead] === 'true') PodmanEngine.spares.set(this.aheadKey(id), spec.user);
    return id;
  }

  /** The pool's spares this process made, by {@link aheadKey}: the user their waiting exec runs as. */
  private static readonly spares = new Map<string, string>();

  private aheadKey(id: string): string {
    return `${this.endpoint}|${id}`;
  }

  /**
   * A spare gets its waiting exec once it runs, before it is offered (a claim comes seconds later):
   * waited for, at most {@link AHEAD_WAIT_MS}, so that a claim seldom finds it still opening. One that
   * fails leaves the spare as it was: its claim's command opens its own exec.
   */
  override async startContainer(id: string): Promise<void> {
    await super.startContainer(id);
    const key = this.aheadKey(id);
    const user = PodmanEngine.spares.get(key);
    PodmanEngine.spares.delete(key);
    if (user === undefined || this.execAhead === 'off') return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      openAhead(key, user, (sinks) => this.openWaitingExec(id, user, sinks)),
      new Promise((resolve) => (timer = setTimeout(resolve, AHEAD_WAIT_MS).unref())),
    ]);
    clearTimeout(timer);
  }

  /** An exec of the waiting shell as `user`, its stdout and stderr demultiplexed into `sinks`. */
  private async openWaitingExec(id: string, user: string, sinks: WaitingSinks): Promise<{ exec: Docker.Exec; stream: ExecStream }> {
    const exec = await this.client.getContainer(id).exec({
      Cmd: ['/bin/sh', '-c', WAIT_SCRIPT, 'moat-wait'],
      User: user,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
    });
    const stream = (await exec.start({ hijack: true, stdin: true, Tty: false })) as unknown as ExecStream;
    const writer = (to: (chunk: Buffer) => void) => ({ write: (chunk: Buffer) => (to(chunk), true) }) as unknown as NodeJS.WritableStream;
    this.client.modem.demuxStream(stream, writer(sinks.out), writer(sinks.err));
    stream.on('end', sinks.end);
    stream.on('close', sinks.end);
    stream.on('error', sinks.end);
    return { exec, stream };
  }

  override async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    dropAhead(this.aheadKey(id));
    await super.stopContainer(id, timeoutSeconds);
  }

  /**
   * Rootless Podman 4.3's Docker-compatible create drops the nofile rlimit (the sandbox got the
   * host's 20000 instead of 4096, measured): there every command moat runs in the sandbox starts
   * under prlimit, which lowers soft and hard limit alike (raising it again needs a capability the
   * sandbox does not have). The container's own main process is wrapped at create (forPodman).
   */
  override async exec(id: string, command: ExecCommand, io: ExecIO): Promise<number> {
    const nofile = (await this.client.rootless()) ? await this.nofileOf(id) : undefined;
    const cmd = nofile ? underPrlimit(nofile, command.cmd) : command.cmd;
    // Without a terminal, an exec waiting in a spare runs the claim's first command (podman-exec-ahead.ts).
    if (!command.tty && !io.endWithContainer && this.execAhead !== 'off') {
      const taken = await takeAhead(this.aheadKey(id), command.user, envCommand(cmd, command.workdir, command.env));
      if (taken) return runTaken(taken, io, () => this.execStatus(taken.exec));
    }
    return super.exec(id, { ...command, cmd }, io);
  }

  /** An exec's own status, as the engine reports it (it can lag the end of the exec's stream by a moment). */
  private async execStatus(exec: Docker.Exec): Promise<number> {
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const state = await exec.inspect().catch((error: unknown) => {
        // The container gone under the command: the cause keeps the engine's 404 (E_TASK_NOT_RUNNING to the caller).
        throw new MoatError('E_ENGINE_FAILED', `could not inspect exec: ${(error as Error).message}`, {
          hint: 'check the engine with `moat doctor`',
          cause: error,
        });
      });
      if (!state.Running && state.ExitCode !== null) return state.ExitCode;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new MoatError('E_ENGINE_FAILED', 'the engine did not report the exit status of the command', { hint: 'check the engine with `moat doctor`' });
  }

  /**
   * Each container's nofile label, read once per process: the warm server opens an engine per
   * command, and the inspect before every `run`'s exec was one more Podman call on its path.
   * A container's labels never change; its entry goes with it (removeContainer).
   */
  private static readonly nofiles = new Map<string, number | undefined>();

  private async nofileOf(id: string): Promise<number | undefined> {
    const { nofiles } = PodmanEngine;
    if (!nofiles.has(id)) {
      const info = await this.inspectContainer(id);
      const value = Number(info?.labels[NOFILE_LABEL]);
      nofiles.set(id, Number.isInteger(value) && value > 0 ? value : undefined);
    }
    return nofiles.get(id);
  }

  override async removeContainer(id: string): Promise<void> {
    dropAhead(this.aheadKey(id));
    PodmanEngine.spares.delete(this.aheadKey(id));
    await super.removeContainer(id);
    PodmanEngine.nofiles.delete(id);
  }

  /**
   * Rootless Podman cannot make the engine-side disk cap: its helper's loop devices are root's
   * ("losetup: cannot find an unused loop device: Permission denied", measured). Said, never tried.
   */
  override async diskCapSupport(helperImage: string): Promise<DiskCapSupport> {
    if (await this.client.rootless()) {
      return { ok: false, why: 'rootless Podman cannot attach loop devices, so no capped volume can be made for the workspace' };
    }
    return super.diskCapSupport(helperImage);
  }

  override async info(): Promise<EngineInfo> {
    const [base, host] = await Promise.all([super.info(), this.libpodHost()]);
    return {
      ...base,
      kind: 'podman',
      rootless: host.security.rootless,
      cgroupVersion: host.cgroupVersion.replace(/^v/, ''),
      cgroupDriver: host.cgroupManager,
      // libpod says "runc version 1.1.5+ds1\ncommit: …": the number is what doctor compares.
      runcVersion: (host.ociRuntime?.name === 'runc' ? /runc version (\S+)/.exec(host.ociRuntime.version ?? '')?.[1] : undefined) ?? base.runcVersion,
    };
  }

  /**
   * The limits the kernel cannot hold a sandbox to here. Rootless Podman gets only the cgroup
   * controllers delegated to the user (none on cgroup v1: Podman then ignores every resource limit,
   * and reads a 256m memory limit back as unlimited); a limit whose controller is missing is not enforced.
   */
  async limitEnforcement(): Promise<LimitEnforcement> {
    if (!(await this.client.rootless())) return { unenforced: [] };
    // On cgroup v1 no controller is ever delegated: said without libpod's /info (seconds, see PodmanClient).
    if (this.client.localSocket && localCgroupVersion() === '1') {
      return { unenforced: [...CGROUP_LIMITS], why: 'rootless Podman on cgroup v1 cannot set resource limits' };
    }
    const host = await this.libpodHost();
    const controllers = new Set(host.cgroupControllers ?? []);
    const unenforced = CGROUP_LIMITS.filter((limit) => !controllers.has(CONTROLLER[limit]));
    if (unenforced.length === 0) return { unenforced };
    const why =
      host.cgroupVersion === 'v1'
        ? 'rootless Podman on cgroup v1 cannot set resource limits'
        : `rootless Podman has no ${unenforced.map((l) => CONTROLLER[l]).join(', ')} cgroup controller delegated to this user`;
    return { unenforced, why };
  }

  private libpodHost(): Promise<LibpodHost> {
    return this.client.host().catch((error: unknown) => {
      throw new MoatError('E_ENGINE_UNREACHABLE', `could not read libpod's /info at ${this.endpoint}: ${(error as Error).message}`, {
        hint: 'check that podman system service runs (scripts/setup-podman.sh)',
        cause: error,
      });
    });
  }
}

interface LibpodHost {
  cgroupVersion: string;
  cgroupManager: string;
  cgroupControllers?: string[];
  security: { rootless: boolean };
  ociRuntime?: { name: string; version?: string };
}

/** The API path prefix of libpod's own endpoints (Podman 4 serves them under any v4 version). */
const LIBPOD = '/v4.0.0/libpod';

/**
 * dockerode speaking to Podman: the create options moat builds for Docker, translated where
 * Podman 4 differs. Measured on Debian 12 (podman 4.3.1, cgroup v1 hybrid):
 * - crun fails on hybrid cgroups: containers run with runc.
 * - Podman applies its own large default RLIMIT_NPROC, which an engine without CAP_SYS_RESOURCE cannot
 *   set ("error setting rlimit type 6"): nproc is given explicitly, no higher than this host allows.
 * - tmpfs takes no uid=/gid= options; `U` gives the mount to the container's user instead (the same owner).
 * - `--init` is Podman's catatonit (Docker's is tini): same job, reaping and passing signals.
 */
export class PodmanClient extends Docker {
  private hostInfo?: Promise<LibpodHost>;
  /** The service's socket when it is on this host (its owner says rootless or not). */
  localSocket?: string;

  override async createContainer(options: Docker.ContainerCreateOptions): Promise<Docker.Container> {
    return super.createContainer(forPodman(options, await this.rootless()));
  }

  /**
   * Whether the service runs rootless. libpod's /info answers it but takes 2.6-4 s on this machine
   * kind (it runs every helper's --version and sizes the image store; measured, the largest part of
   * `moat run` on Podman): a local service's socket is made by the service's own user, so its
   * owner says it at the cost of a stat. A remote service is asked.
   */
  async rootless(): Promise<boolean> {
    if (this.localSocket) {
      const owner = (() => {
        try {
          return statSync(this.localSocket).uid;
        } catch {
          return undefined;
        }
      })();
      if (owner !== undefined) return owner !== 0;
    }
    return (await this.host()).security.rootless;
  }

  /** libpod's facts about the engine's host, read once (a failed read is tried again). */
  host(): Promise<LibpodHost> {
    this.hostInfo ??= this.libpod<{ host: LibpodHost }>('/info').then((info) => info.host);
    this.hostInfo.catch(() => (this.hostInfo = undefined));
    return this.hostInfo;
  }

  /** A GET of libpod's own API (facts Docker's API lacks). */
  libpod<T>(path: string): Promise<T> {
    return new Promise((resolve, reject) => {
      this.modem.dial({ path: `${LIBPOD}${path}`, method: 'GET', statusCodes: { 200: true, 500: 'server error' } }, (error, data) =>
        error ? reject(error) : resolve(data as T),
      );
    });
  }
}

/**
 * Rootless: the container's user namespace keeps the user's own id (keep-id), so what the sandbox
 * writes into the task's workspace belongs to the user, not to a subordinate id moat cannot read.
 */
export function forPodman(options: Docker.ContainerCreateOptions, rootless: boolean): Docker.ContainerCreateOptions {
  const host = options.HostConfig ?? {};
  const nofile = host.Ulimits?.find((u) => u.Name === 'nofile')?.Hard;
  const wrap = rootless && nofile !== undefined && Array.isArray(options.Cmd);
  const ulimits = (host.Ulimits ?? []).filter((u) => u.Name !== 'nproc');
  const nproc = hostNproc();
  return {
    ...options,
    ...(wrap ? { Cmd: underPrlimit(nofile, options.Cmd as string[]), Labels: { ...options.Labels, [NOFILE_LABEL]: String(nofile) } } : {}),
    HostConfig: {
      ...host,
      Runtime: 'runc',
      ...(rootless ? { UsernsMode: 'keep-id' } : {}),
      Ulimits: [...ulimits, { Name: 'nproc', Soft: nproc, Hard: nproc }],
      ...(host.Tmpfs ? { Tmpfs: tmpfsForPodman(host.Tmpfs, options.User) } : {}),
    },
  };
}

/** uid=N,gid=M becomes U when N:M is the container's user (the only owner moat ever gives a tmpfs). */
export function tmpfsForPodman(tmpfs: Record<string, string>, user: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [target, optionString] of Object.entries(tmpfs)) {
    const options = optionString.split(',');
    const uid = options.find((o) => o.startsWith('uid='))?.slice(4);
    const gid = options.find((o) => o.startsWith('gid='))?.slice(4);
    if (uid !== undefined && `${uid}:${gid ?? uid}` === user) {
      out[target] = [...options.filter((o) => !o.startsWith('uid=') && !o.startsWith('gid=')), 'U'].join(',');
    } else out[target] = optionString;
  }
  return out;
}

/**
 * RLIMIT_NPROC for the sandbox: this process's own soft limit (Podman, local to this host, runs
 * under the same limits), at most 32768. The sandbox's process count is held by the pids limit;
 * this only has to be one the engine may set.
 */
function hostNproc(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max processes'));
    const soft = line?.split(/\s+/)[2];
    if (soft && /^\d+$/.test(soft)) return Math.min(Number(soft), 32768);
  } catch {
    // not Linux: the default below
  }
  return 32768;
}

/** This host's cgroup version as Podman sees it: v2 only where the unified hierarchy is mounted at the top. */
function localCgroupVersion(): '1' | '2' {
  return existsSync('/sys/fs/cgroup/cgroup.controllers') ? '2' : '1';
}

/** How long a spare's start waits for its exec opened ahead to say it runs. */
const AHEAD_WAIT_MS = 5000;

/** Where a rootless sandbox's nofile limit is kept for the commands moat runs in it later. */
const NOFILE_LABEL = 'moat.nofile';

/** The command, started with its open-files limit lowered, soft and hard (util-linux's prlimit, in every Debian image). */
function underPrlimit(nofile: number, cmd: string[]): string[] {
  return ['/usr/bin/prlimit', `--nofile=${nofile}:${nofile}`, '--', ...cmd];
}
