import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import { Moat } from '../../src/index.js';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { DockerEngine } from '../../src/engine/docker-engine.js';
import { TaskStore } from '../../src/state/task-store.js';

export const GIT_ENV = {
  GIT_AUTHOR_NAME: 'Test User',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'Test User',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
};

export function sh(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): string {
  return execFileSync(cmd, args, { cwd, env: { ...process.env, ...GIT_ENV, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function gitIn(cwd: string, ...args: string[]): string {
  return sh('git', args, cwd).trim();
}

/** How a command run by `finish` ended, its output as text. */
export interface Finished {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end, given `input` (none: stdin closed), without blocking this test
 * worker's event loop as spawnSync does. Why it matters: vitest's worker gives the main process 60 s
 * to acknowledge each report of a test's progress, and the acknowledgement is read only when the
 * loop turns; synchronous tests run back to back without a turn, so a file of them that takes over
 * a minute ends the run with "Timeout calling onTaskUpdate" although every test passed (seen on a
 * loaded machine: terminal-output's last four tests took 64 s).
 */
export function finish(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string | Buffer; timeout?: number } = {},
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'], timeout: options.timeout });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    // A command that exits without reading its input closes the pipe: not this caller's error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
    child.once('error', reject);
    child.once('close', (status, signal) =>
      resolve({ status, signal, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') }),
    );
  });
}

/** A scratch world for one test: a user repository with one commit, a moat home, a user config. */
/** Pids of the CLI servers whose sockets are under a runtime directory. */
export function serverPids(runtimeDir: string): number[] {
  const dir = join(runtimeDir, `moat-${process.getuid!()}`);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sock.pid'))
    .map((f) => {
      // A server that stops between the listing and the read has removed its pid file.
      try {
        return Number(readFileSync(join(dir, f), 'utf8'));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw err;
      }
    })
    .filter((pid) => pid > 0);
}

/**
 * CLI server processes whose socket path starts with `prefix`, found by their command line: also
 * one still starting, whose pid file is not written yet (a client interrupted right after it
 * spawned its server).
 */
export function serverProcesses(prefix: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.includes('__serve') && args.some((a) => a.startsWith(prefix))) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** Stops the CLI servers under a runtime directory and waits until they are gone. */
export async function stopServers(runtimeDir: string): Promise<void> {
  const pids = [...new Set([...serverPids(runtimeDir), ...serverProcesses(`${runtimeDir}/`)])];
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 300 && pids.some((pid) => existsSync(`/proc/${pid}`)); i += 1) await new Promise((r) => setTimeout(r, 100));
}

/**
 * This suite run's id (global-setup.ts sets it before the workers start). Its scratch folders are
 * named by it and the moat homes they make are listed under it, so that the leak check at the end
 * of one run never takes a concurrent run's tasks or warm servers for its own leftovers.
 */
export const TEST_RUN = process.env.MOAT_TEST_RUN ?? 'solo';

/** The file listing the keys of the moat homes a run's scratches made, one per line. */
export function runHomesFile(run = TEST_RUN): string {
  return join(tmpdir(), `moat-test-run-${run}.homes`);
}

export class Scratch {
  readonly root: string;
  readonly repo: string;
  readonly home: string;
  readonly config: string;
  private readonly moats: Moat[] = [];

  constructor(options: { commit?: boolean; name?: string } = {}) {
    this.root = mkdtempSync(join(tmpdir(), `moat-test-${TEST_RUN}-`));
    this.repo = join(this.root, options.name ?? 'repo');
    this.home = join(this.root, 'home');
    this.config = join(this.root, 'config.yaml');
    mkdirSync(this.repo, { recursive: true });
    mkdirSync(join(this.root, 'run'), { mode: 0o700 });
    appendFileSync(runHomesFile(), `${new TaskStore(this.home).homeKey}\n`);
    gitIn(this.repo, 'init', '-q', '--initial-branch=main');
    gitIn(this.repo, 'config', 'user.name', 'Test User');
    gitIn(this.repo, 'config', 'user.email', 'test@example.invalid');
    if (options.commit !== false) {
      writeFileSync(join(this.repo, 'README.md'), '# sample\n');
      writeFileSync(join(this.repo, 'app.sh'), '#!/bin/sh\necho app\n');
      gitIn(this.repo, 'add', '-A');
      gitIn(this.repo, 'commit', '-qm', 'initial');
    }
  }

  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    // The CLI's warm servers (bin/moat.js) of this scratch live under its root, and go with it.
    return { ...process.env, MOAT_HOME: this.home, MOAT_CONFIG: this.config, XDG_RUNTIME_DIR: join(this.root, 'run'), ...extra };
  }

  moat(options: { cwd?: string; env?: Record<string, string> } = {}): Moat {
    const moat = new Moat({ cwd: options.cwd ?? this.repo, env: this.env(options.env) });
    this.moats.push(moat);
    return moat;
  }

  writeConfig(yaml: string): void {
    writeFileSync(this.config, yaml);
  }

  /** Removes every engine resource this scratch home made, then the files. Runs on failure too. */
  async cleanup(): Promise<void> {
    // Warm servers first, and wait for them: one stopping removes the tasks it made ahead, and one
    // still running could make another after the containers below were removed.
    await stopServers(join(this.root, 'run'));
    const moat = this.moats[0] ?? this.moat();
    const endpoint = await findEngine();
    const docker = new Docker(connectionOptions(endpoint) as Docker.DockerOptions);
    const filters = { label: [`moat.home=${moat.context.store.homeKey}`] };
    for (const c of await docker.listContainers({ all: true, filters }))
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined);
    // Workspace volumes (engines without host mounts), once their containers are gone.
    for (const v of (await docker.listVolumes({ filters })).Volumes ?? [])
      await (v.Labels?.['moat.disk'] ? new DockerEngine(endpoint).removeVolume(v.Name) : docker.getVolume(v.Name).remove())
        // A capped volume (docker-disk.ts) also has a loop device to detach and an image to delete.
        .catch(() => undefined);
    // The home's egress gateway, if a test started one.
    try {
      process.kill(Number(readFileSync(join(this.home, 'gateway', 'pid'), 'utf8')), 'SIGTERM');
    } catch {
      // none running
    }
    // Capped task volumes a failed test left mounted.
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[4] ?? '')
      .filter((p) => p.startsWith(`${this.root}/`));
    for (const mount of mounts.reverse()) execFileSync('umount', ['-l', mount], { stdio: 'ignore' });
    // Workspaces may hold files of the sandbox uid; root removes them, others own them.
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Collects a command's output for assertions. */
export function captureIO(input?: string) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
  let stdin: PassThrough | undefined;
  if (input !== undefined) {
    stdin = new PassThrough();
    stdin.end(input);
  }
  return { io: { stdout, stderr, stdin }, out: () => out, err: () => err };
}

export async function inspect(id: string): Promise<Docker.ContainerInspectInfo> {
  const endpoint = await findEngine();
  return new Docker(connectionOptions(endpoint) as Docker.DockerOptions).getContainer(id).inspect();
}

export const MOAT_BIN = join(import.meta.dirname, '..', '..', 'bin', 'moat.js');
/** The command a user runs (package.json "bin"): the native client for exec when it is built (native/client.c). */
export const MOAT_COMMAND = join(import.meta.dirname, '..', '..', 'bin', 'moat');

/** Scratches made in a test file, all cleaned up after each test (also when it failed). */
export function scratchPool(): { scratch: (options?: ConstructorParameters<typeof Scratch>[0]) => Scratch; cleanup: () => Promise<void> } {
  const made: Scratch[] = [];
  return {
    scratch: (options) => {
      const s = new Scratch(options);
      made.push(s);
      return s;
    },
    cleanup: async () => {
      await Promise.all(made.splice(0).map((s) => s.cleanup()));
    },
  };
}

/** A CA of the test's own and a certificate it signed for `host`, made with openssl in `dir`. */
export function makeTestCa(dir: string, host: string): { ca: string; key: string; cert: string } {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=moat test CA', '-days', '1']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', `/CN=${host}`]);
  writeFileSync(join(dir, 'ext.cnf'), `subjectAltName=DNS:${host}\n`);
  run(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '1', '-extfile', 'ext.cnf']);
  return { ca: join(dir, 'ca.pem'), key: join(dir, 'leaf.key'), cert: join(dir, 'leaf.pem') };
}

/** A self-signed certificate for `host` (an upstream's own, trusted by nobody), made with openssl in `dir`. */
export function selfSigned(dir: string, host: string): { key: Buffer; cert: Buffer } {
  const key = join(dir, `${host}.key`);
  const cert = join(dir, `${host}.pem`);
  const args = ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-subj', `/CN=${host}`];
  execFileSync('openssl', [...args, '-addext', `subjectAltName=DNS:${host}`, '-days', '1'], { stdio: 'ignore' });
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

/** Polls until `check` passes (audit lines are written when a connection closes, a moment later). */
export async function eventually<T>(read: () => Promise<T>, check: (value: T) => boolean, ms = 3000): Promise<T> {
  let value = await read();
  for (let waited = 0; !check(value) && waited < ms; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    value = await read();
  }
  return value;
}

/**
 * Whether the suite runs against an engine that does not share this host (DOCKER_HOST=tcp:// or
 * ssh://, .ci/run's remote phase): a test of a host-local mechanism then asserts what holds there instead.
 */
export async function remoteEngine(): Promise<boolean> {
  return (await findEngine()).transport !== 'unix';
}

/** Bytes of a container's logs the engine still holds (stdout and stderr), read through its API. */
export async function logBytes(id: string): Promise<number> {
  const docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
  // Without follow the engine answers with one buffer (its frames' 8-byte headers included).
  const total = ((await docker.getContainer(id).logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer).length;
  return total;
}

/** The engine the suite runs against (MOAT_ENGINE=podman selects Podman): what it reports is read in its own words. */
export async function engineKind(): Promise<'docker' | 'podman'> {
  return (await findEngine()).kind;
}

/** Podman's own inspect (libpod's API), for what its Docker-compatible inspect leaves out (the log size cap). */
export async function libpodInspect(id: string): Promise<{ HostConfig: { LogConfig: { Type: string; Size?: string } } }> {
  const docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
  return new Promise((resolve, reject) => {
    docker.modem.dial({ path: `/v4.0.0/libpod/containers/${id}/json`, method: 'GET', statusCodes: { 200: true, 404: 'no such container' } }, (error, data) =>
      error ? reject(error) : resolve(data as never),
    );
  });
}

/** Capabilities Podman grants by default, each of which moat's CapDrop ALL removes (Podman lists them instead of ALL). */
export const PODMAN_DEFAULT_CAPS = [
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
];
