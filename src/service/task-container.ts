import { LABEL, resourceLabels } from '../domain/labels.js';
import { sandboxSpec, type SandboxSpec, type WorkspaceSource } from '../domain/sandbox-spec.js';
import type { TaskRecord } from '../domain/task.js';
import type { ContainerEngine } from '../engine/engine.js';
import { MOAT_VERSION } from '../version.js';
import type { MoatContext } from './context.js';
import { socketDir } from '../gateway/task-egress.js';
import { HANDOFF_BINARY, handoffBuilt } from '../gateway/native.js';
import { mountVolume } from '../workspace/task-volume.js';
import { dirname } from 'node:path';
import { GVISOR_RUNTIME } from '../domain/isolation.js';
import { isMoatError, MoatError } from '../errors.js';

export function containerName(record: Pick<TaskRecord, 'repoKey' | 'name'>, role = 'task'): string {
  const suffix = role === 'task' ? '' : `-${role}`;
  return `moat-${record.repoKey}-${record.name}${suffix}`;
}

/** The engine volume that holds a task's repository where the engine cannot see host folders. */
export function workspaceVolume(record: Pick<TaskRecord, 'repoKey' | 'name'>): string {
  return `${containerName(record)}-workspace`;
}

/** Where a task's repository is: the host folder (local engines) or the engine's own volume. */
export function workspaceSource(ctx: MoatContext, record: TaskRecord): WorkspaceSource {
  return record.workspace === 'volume'
    ? { kind: 'volume', name: workspaceVolume(record) }
    : { kind: 'host', path: ctx.store.workspacePath(record.repoKey, record.name) };
}

/** Labels of a task's engine resources (container, workspace volume). */
export function taskLabels(ctx: MoatContext, record: TaskRecord, role: string): Record<string, string> {
  return {
    ...resourceLabels({ task: record.name, repoKey: record.repoKey, homeKey: ctx.store.homeKey, version: MOAT_VERSION, role }),
    [LABEL.template]: record.template,
  };
}

/** The hardened spec of a task's container, from its record alone (so `reset` rebuilds the same). */
export function taskSpec(ctx: MoatContext, record: TaskRecord, env: Record<string, string>, role = 'task'): SandboxSpec {
  const egress = record.network !== 'none' && role === 'task';
  const bridged = egressBridged(record);
  return sandboxSpec({
    containerName: containerName(record, role),
    taskName: record.name,
    image: record.image,
    workspace: workspaceSource(ctx, record),
    uid: record.user.uid,
    gid: record.user.gid,
    limits: record.limits,
    env,
    // Helpers only read the workspace: they never get the way out.
    // Without host mounts (a remote engine), or under gVisor (which cannot connect a host unix
    // socket), the way out is moat's bridge over exec streams.
    egressSocketDir: egress && !bridged ? socketDir(ctx.store.home, record.repoKey, record.name) : undefined,
    egressBridged: egress && bridged,
    handoffHelper: egress && !bridged && handoffBuilt() ? HANDOFF_BINARY : undefined,
    gvisorRuntime: record.isolation === 'gvisor' ? gvisorRuntimeOf(ctx) : undefined,
    sshAgentDir: role === 'task' ? record.sshAgentDir : undefined,
    readOnlyMounts: role === 'task' ? (record.mounts ?? []) : [],
    // A pool's spare says so: its engine may ready it for the claim's first command.
    labels: { ...taskLabels(ctx, record, role), ...(record.state === 'pooled' && role === 'task' ? { [LABEL.madeAhead]: 'true' } : {}) },
  });
}

/**
 * Whether the task's way out is moat's bridge over the engine's exec streams rather than a host
 * socket mounted into the sandbox: on an engine without host mounts, and under gVisor, where a
 * bind-mounted host unix socket cannot be connected (EPERM, measured with runsc 20221219).
 */
export function egressBridged(record: Pick<TaskRecord, 'network' | 'workspace' | 'isolation'>): boolean {
  return record.network !== 'none' && (record.workspace === 'volume' || record.isolation === 'gvisor');
}

/** gVisor's runtime name in the engine; MOAT_GVISOR_RUNTIME names another (tests use a missing one). */
export function gvisorRuntimeOf(ctx: Pick<MoatContext, 'env'>): string {
  return ctx.env.MOAT_GVISOR_RUNTIME || GVISOR_RUNTIME;
}

/** Creates and starts a container; removes it again if starting fails. */
export async function startContainer(engine: ContainerEngine, spec: SandboxSpec): Promise<string> {
  // After a reboot the task's capped volume is no longer mounted: mount it before anything
  // binds the workspace (binding the empty mount point would hide the task's work).
  if (spec.workspace.kind === 'host') await mountVolume(dirname(dirname(spec.workspace.path)));
  let id: string;
  try {
    id = await engine.createContainer(spec);
  } catch (error) {
    throw isolationUnavailable(spec, error);
  }
  try {
    await engine.startContainer(id);
  } catch (error) {
    await engine.removeContainer(id).catch(() => undefined);
    throw isolationUnavailable(spec, error);
  }
  return id;
}

/** The task's container if it is running. */
export async function runningContainer(engine: ContainerEngine, record: TaskRecord): Promise<string | undefined> {
  if (!record.containerId) return undefined;
  const info = await engine.inspectContainer(record.containerId);
  return info?.running ? info.id : undefined;
}

/**
 * Runs `fn` against a container that sees the task's workspace: the task's own when it runs,
 * otherwise a short-lived one made from the same spec (after `down`, a crash or an engine restart).
 */
export async function withWorkspaceContainer<T>(
  ctx: MoatContext,
  record: TaskRecord,
  fn: (id: string) => Promise<T>,
  options: { helper?: boolean } = {},
): Promise<T> {
  const engine = await ctx.engine();
  const running = options.helper ? undefined : await runningContainer(engine, record);
  if (running) return fn(running);
  const spec = taskSpec(ctx, record, {}, 'helper');
  // A helper left by a crash would block the name.
  await engine.removeContainer(spec.name).catch(() => undefined);
  const id = await startContainer(engine, spec);
  try {
    return await fn(id);
  } finally {
    await engine.removeContainer(id).catch(() => undefined);
  }
}

/**
 * Under gVisor, an engine that cannot create or start the container (runtime not registered,
 * runsc failing: no ptrace, an old kernel) says so as E_ISOLATION_UNAVAILABLE, with the fix.
 * Other failures (a missing image, an engine that is down) keep their own codes.
 */
function isolationUnavailable(spec: SandboxSpec, error: unknown): unknown {
  if (spec.isolation.kind !== 'gvisor' || !isMoatError(error) || error.code !== 'E_ENGINE_FAILED') return error;
  const cause = error.message.replace(/\s+/g, ' ').slice(0, 300);
  return new MoatError('E_ISOLATION_UNAVAILABLE', `gVisor (runtime ${spec.isolation.runtime}) cannot run here: ${cause}`, {
    hint: 'install and register it: npm run setup (scripts/setup-gvisor.sh, as root); `moat doctor` checks it; or use isolation: runc',
    cause: error,
    details: { runtime: spec.isolation.runtime },
  });
}
