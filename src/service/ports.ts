import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseIp } from '../domain/ip-address.js';
import type { TaskRecord } from '../domain/task.js';
import { MoatError } from '../errors.js';
import { processAlive } from '../state/process-alive.js';
import type { MoatContext } from './context.js';
import type { ForwarderSpec, OpenPortState } from './port-forwarder.js';

// The compiled forwarder, found the same way from src/ (tests) and dist/ (the CLI and its bundle).
const FORWARDER = fileURLToPath(new URL('../../dist/service/port-forwarder.js', import.meta.url));

export interface OpenPort {
  task: string;
  /** The port inside the sandbox (its 127.0.0.1). */
  port: number;
  hostPort: number;
  bind: string;
  pid: number;
}

function portsDir(ctx: MoatContext, record: Pick<TaskRecord, 'repoKey' | 'name'>): string {
  return join(ctx.store.taskDir(record.repoKey, record.name), 'ports');
}

function checkPort(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535)
    throw new MoatError('E_USAGE', `${what} ${value} is not a TCP port`, { hint: 'give a number from 1 to 65535' });
  return value;
}

/** Whether the pid is a forwarder of this state file (a recycled pid is never signalled). */
async function isForwarder(pid: number, stateFile: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.includes('port-forwarder.js') && cmdline.includes(JSON.stringify(stateFile).slice(1, -1));
}

/** The task's open ports; a state file whose process is gone is removed. */
export async function listPorts(ctx: MoatContext, record: Pick<TaskRecord, 'repoKey' | 'name'>): Promise<OpenPort[]> {
  const dir = portsDir(ctx, record);
  const open: OpenPort[] = [];
  for (const name of (await readdir(dir).catch(() => [] as string[])).filter((n) => /^\d+\.json$/.test(n)).sort((a, b) => parseInt(a) - parseInt(b))) {
    const file = join(dir, name);
    const state = JSON.parse(await readFile(file, 'utf8').catch(() => 'null')) as OpenPortState | null;
    if (state && (await isForwarder(state.pid, file)))
      open.push({ task: record.name, port: state.port, hostPort: state.hostPort, bind: state.bind, pid: state.pid });
    else await rm(file, { force: true });
  }
  return open;
}

/**
 * `moat port TASK PORT`: the sandbox's 127.0.0.1:PORT at the host's BIND:HOST-PORT (loopback
 * unless the user names another address). Inbound only, through the engine's exec stream, so it
 * works for a task without a network. Without --host-port the same number is tried, then any free one.
 */
export async function openPort(ctx: MoatContext, task: string, port: number, options: { hostPort?: number; bind?: string } = {}): Promise<OpenPort> {
  checkPort(port, 'port');
  if (options.hostPort !== undefined) checkPort(options.hostPort, '--host-port');
  const bind = options.bind ?? '127.0.0.1';
  if (!parseIp(bind.includes(':') ? `[${bind}]` : bind))
    throw new MoatError('E_USAGE', `--bind ${JSON.stringify(bind)} is not an IP address`, {
      hint: 'give an address of this host, e.g. 127.0.0.1 (the default) or 0.0.0.0 for every interface',
    });
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const engine = await ctx.engine();
  const info = record.containerId ? await engine.inspectContainer(record.containerId) : undefined;
  if (!record.containerId || !info?.running)
    throw new MoatError('E_TASK_NOT_RUNNING', `task ${task} is not running`, { hint: `start it with moat reset ${task}` });
  const existing = (await listPorts(ctx, record)).find((p) => p.port === port);
  if (existing) {
    throw new MoatError('E_USAGE', `port ${port} of task ${task} is already open at ${existing.bind}:${existing.hostPort}`, {
      hint: `close it first: moat port ${task} ${port} --close`,
    });
  }
  const probe = await engine.execCapture(record.containerId, { cmd: ['sh', '-c', 'command -v socat'], user: `${record.user.uid}:${record.user.gid}` });
  if (probe.exitCode !== 0)
    throw new MoatError('E_IMAGE_MISSING', `the image of task ${task} has no socat, which moat port runs inside the sandbox`, {
      hint: 'build the template on moat-base (it has socat), or add socat to its image',
    });
  const dir = portsDir(ctx, record);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const first = await startForwarder(ctx, {
    containerId: record.containerId,
    port,
    hostPort: options.hostPort ?? port,
    bind,
    user: `${record.user.uid}:${record.user.gid}`,
    stateFile: join(dir, `${port}.json`),
  });
  const started =
    'error' in first && first.error === 'EADDRINUSE' && options.hostPort === undefined
      ? await startForwarder(ctx, {
          containerId: record.containerId,
          port,
          hostPort: 0,
          bind,
          user: `${record.user.uid}:${record.user.gid}`,
          stateFile: join(dir, `${port}.json`),
        })
      : first;
  if ('error' in started) {
    const hint =
      started.error === 'EADDRINUSE'
        ? 'choose another with --host-port'
        : started.error === 'EADDRNOTAVAIL'
          ? 'give an address this host has with --bind'
          : `see ${join(dir, 'forwarder.log')}`;
    throw new MoatError('E_USAGE', `cannot listen on ${bind}:${options.hostPort ?? port} (${started.error})`, { hint });
  }
  return { task, port, hostPort: started.hostPort, bind, pid: started.pid };
}

function startForwarder(ctx: MoatContext, spec: ForwarderSpec): Promise<{ hostPort: number; pid: number } | { error: string }> {
  const log = openSync(join(spec.stateFile, '..', 'forwarder.log'), 'a', 0o600);
  const env = Object.fromEntries(
    [
      'PATH',
      'MOAT_ENGINE',
      'MOAT_ENGINE_SOCKET',
      'MOAT_CONFIG',
      'DOCKER_HOST',
      'XDG_RUNTIME_DIR',
      'HOME',
      'KUBECONFIG',
      'MOAT_K8S_CONTEXT',
      'MOAT_K8S_NAMESPACE',
      'MOAT_K8S_IMAGE_ENGINE',
    ].flatMap((k) => (ctx.env[k] !== undefined ? [[k, ctx.env[k]]] : [])),
  );
  const child = spawn(process.execPath, [FORWARDER, JSON.stringify(spec)], { detached: true, stdio: ['ignore', log, log, 'ipc'], env });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ error: 'the forwarder did not start' });
    }, 15_000);
    child.once('message', (message: { ready?: number; error?: string }) => {
      clearTimeout(timer);
      if (child.connected) child.disconnect();
      child.unref();
      resolve(message.ready !== undefined ? { hostPort: message.ready, pid: child.pid! } : { error: message.error ?? 'unknown' });
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve({ error: 'the forwarder exited' });
    });
  });
}

/** Closes one forward; false when it was not open. The process removes its state file as it leaves. */
export async function closePort(ctx: MoatContext, task: string, port: number): Promise<boolean> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  return closeOne(ctx, record, checkPort(port, 'port'));
}

async function closeOne(ctx: MoatContext, record: Pick<TaskRecord, 'repoKey' | 'name'>, port: number): Promise<boolean> {
  const open = (await listPorts(ctx, record)).find((p) => p.port === port);
  if (!open) return false;
  const file = join(portsDir(ctx, record), `${port}.json`);
  // Checked again right before the signal: the pid must still be this forward's. Then waited for
  // until it has exited, a zombie included (its socket is closed; its parent reaps it when it can).
  if (await isForwarder(open.pid, file)) {
    process.kill(open.pid, 'SIGTERM');
    for (let i = 0; i < 100 && processAlive(open.pid); i += 1) await new Promise((r) => setTimeout(r, 50));
  }
  await rm(file, { force: true });
  return true;
}

/** down, rm and gc: every forward of the task closes (its host ports are free when this returns). */
export async function closeTaskPorts(ctx: MoatContext, record: Pick<TaskRecord, 'repoKey' | 'name'>): Promise<void> {
  for (const open of await listPorts(ctx, record)) await closeOne(ctx, record, open.port);
}
