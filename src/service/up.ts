import { checkLimitEnforcement } from './limit-check.js';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createVolume, releaseVolume } from '../workspace/task-volume.js';
import { planDisk } from './disk-plan.js';
import { devcontainerBase } from './devcontainer.js';
import { checkMounts } from './mounts.js';
import { chooseTaskTemplate } from './repo-templates.js';
import { describeChoice } from '../domain/toolchain.js';
import { startTaskAgent, stopTaskAgent } from './ssh-agent.js';
import { checkEgressRules } from '../config/effective.js';
import type { NetworkMode } from '../domain/egress-policy.js';
import { openTaskEgress, removeTaskEgress } from './egress.js';
import { bindSecrets, pushSecrets } from './secrets.js';
import { generateTaskName, taskBranch, validateTaskName } from '../domain/task-name.js';
import type { TaskRecord } from '../domain/task.js';
import { MoatError } from '../errors.js';
import { planTemplateImage } from '../image/template-image.js';
import type { TemplateSpec } from '../image/template.js';
import type { EffectiveConfig } from '../config/effective.js';
import { SANDBOX_HOME } from '../domain/sandbox-spec.js';
import { renderHomeFile } from '../domain/home-seed.js';
import type { ContainerEngine } from '../engine/engine.js';
import { PassThrough, type Readable } from 'node:stream';
import { createTaskWorkspace, restoreUncommitted, seedVolumeWorkspace } from '../workspace/task-workspace.js';
import { wipRef } from './sync.js';
import type { MoatContext } from './context.js';
import { addGrants, homeOf, secretLookingNames, taskEnv } from './task-env.js';
import { egressBridged, gvisorRuntimeOf, runningContainer, startContainer, taskLabels, taskSpec, workspaceVolume } from './task-container.js';
import type { Isolation } from '../domain/isolation.js';
import { discardTask } from './gc.js';
import { connectSandbox, stopBridge } from './egress-bridge.js';
import { cancelledError, isCancelledError, throwIfCancelled, untilCancelled } from './cancel.js';
import { claimSpare, poolKey, poolRef } from './task-pool.js';
import type { UserRepository } from '../workspace/user-repo.js';
import { prepareCreateRef } from '../workspace/prepared-ref.js';
import { Rollback } from './rollback.js';

export interface UpOptions {
  task?: string;
  template?: string;
  base?: string;
  /** Network mode, given by the user (flags widen; a repository's config cannot). */
  network?: NetworkMode;
  /** Extra hosts to allow, given by the user. */
  allow?: string[];
  /** egress.ask for this task, given by the user (--ask): an undecided host waits for a human's answer. */
  ask?: boolean;
  /** Host variables to pass through by name (NAME) or to set (NAME=value), given by the user. */
  env?: string[];
  /** Build the environment from the repository's committed devcontainer.json. */
  devcontainer?: boolean;
  /** Private keys for the task's own ssh-agent, given by the user. */
  sshKeys?: string[];
  /** runc or gvisor, given by the user (--isolation): wins over the configs, like --network. */
  isolation?: Isolation;
  /**
   * Cancels the up (the CLI aborts it at Ctrl-C or TERM): whatever it made is removed and it
   * throws E_INTERRUPTED (exit 130) or E_TERMINATED (143). Once `up` has returned, the task is whole.
   */
  signal?: AbortSignal;
}

/** Awaits all at once, but reports the first failure in the order given, whichever came first. */
async function inOrder<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(promises);
  for (const result of settled) if (result.status === 'rejected') throw result.reason;
  return settled.map((result) => (result as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/**
 * Creates a task: branch `moat/<name>` at the base, a workspace repository cloned from it, and a
 * hardened container that sees only that workspace. Everything that can fail without side
 * effects (names, config, engine, image) is checked first; after that, a failure undoes every
 * step already taken. A cancel (options.signal) is honoured between steps, and at once during
 * the long ones that leave nothing behind (image builds); it is rolled back like a failure.
 */
export async function up(ctx: MoatContext, options: UpOptions = {}): Promise<TaskRecord> {
  const { signal } = options;
  try {
    return await makeTask(ctx, options);
  } catch (error) {
    // Cancelled before anything was made, or a step failed of the cancel itself (a git child
    // gets the terminal's Ctrl-C too): the user asked to stop, and that is what is reported.
    if (signal?.aborted && !isCancelledError(error)) throw cancelledError(signal, 'up', true);
    throw error;
  }
}

async function makeTask(ctx: MoatContext, options: UpOptions): Promise<TaskRecord> {
  const plan = await planTask(ctx, options);
  const claimed = plan.poolKey ? await fromPool(ctx, plan, plan.poolKey, options) : undefined;
  if (claimed) return claimed;
  throwIfCancelled(options.signal);
  return provisionTask(ctx, plan, { signal: options.signal });
}

/**
 * Everything a task is made from, decided before anything is made: names, config, engine,
 * template and image, secrets, network and egress, disk. Nothing here has a side effect that
 * outlives it (an image built is a cache), so a failure or a cancel leaves nothing to undo.
 */
interface TaskPlan {
  name: string;
  repo: UserRepository;
  baseRef: string;
  baseCommit: string;
  branch: string;
  config: EffectiveConfig;
  engine: ContainerEngine;
  env: Record<string, string>;
  flagEnv: string[];
  templateEnv: Record<string, string>;
  unenforcedLimits: NonNullable<TaskRecord['unenforcedLimits']>;
  user: TaskRecord['user'];
  dev?: Awaited<ReturnType<typeof devcontainerBase>>;
  choice: Awaited<ReturnType<typeof chooseTaskTemplate>>['choice'];
  spec: TemplateSpec;
  image: string;
  secrets: Awaited<ReturnType<typeof bindSecrets>>;
  network: NetworkMode;
  egress: TaskRecord['egress'];
  ask: boolean;
  mounts: Awaited<ReturnType<typeof checkMounts>>;
  sshKeys: string[];
  isolation: Isolation;
  diskPlan: Awaited<ReturnType<typeof planDisk>>;
  identity: { name?: string; email?: string };
  /** The request's shape when a task made ahead could serve it (task-pool.ts); undefined otherwise. */
  poolKey?: string;
  /**
   * Finds or builds the image, where the plan did not: a spare of this very key was ready, and its
   * container runs from that image. Whatever is made from the plan instead calls it first.
   */
  ensureImage?: () => Promise<string>;
}

async function planTask(ctx: MoatContext, options: UpOptions): Promise<TaskPlan> {
  const { signal } = options;
  const name = options.task === undefined ? generateTaskName() : validateTaskName(options.task);
  // The engine is asked while git and config answer; its error, if any, comes in its turn below.
  const engineReady = ctx.engine();
  engineReady.catch(() => undefined);
  const repo = await ctx.repo();
  const baseRef = options.base ?? 'HEAD';
  const branch = taskBranch(name);
  // A generated name's branch is not looked up (one git process less): making it is atomic
  // (createRef), and fails with the same E_TASK_EXISTS in the unlikely case it is taken.
  const [config, baseCommit, existing, userIdentity] = await inOrder([
    ctx.effectiveConfig(repo),
    repo.resolveCommit(baseRef),
    options.task === undefined ? Promise.resolve(undefined) : repo.refValue(`refs/heads/${branch}`),
    ctx.caches ? ctx.caches.identity(repo.gitDir, () => repo.userIdentity()) : repo.userIdentity(),
  ] as const);
  if (existing) {
    throw new MoatError('E_TASK_EXISTS', `branch ${branch} already exists`, {
      hint: 'choose another --task name, or merge/delete the old branch first; if moat was killed while making it, `moat gc` removes what it left',
    });
  }
  const env = taskEnv(config, ctx.env);
  const flagged: string[] = [];
  // Kept for `reset`: names are read again from the environment then; NAME=value as given.
  const flagEnv: string[] = [];
  for (const entry of options.env ?? []) {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/s.exec(entry);
    if (!match)
      throw new MoatError('E_USAGE', `invalid --env ${JSON.stringify(entry)}`, { hint: 'use --env NAME (passes your value through) or --env NAME=value' });
    const value = match[2] ?? ctx.env[match[1]!];
    if (value === undefined)
      throw new MoatError('E_USAGE', `--env ${match[1]}: the variable is not set in your environment`, {
        hint: `export ${match[1]}=… first, or pass --env ${match[1]}=value`,
      });
    env[match[1]!] = value;
    flagged.push(match[1]!);
    flagEnv.push(match[2] === undefined ? match[1]! : entry);
  }
  for (const name of secretLookingNames([...config.envPassthrough, ...flagged])) {
    ctx.progress(`warning: envPassthrough hands ${name} to the agent and everything it runs; bind it as a secret instead (secrets.${name} in your config)`);
  }
  const engine = await engineReady;
  const unenforcedLimits = await checkLimitEnforcement(engine, await ctx.userConfig());
  if (unenforcedLimits.length > 0) ctx.progress(`note: ${unenforcedLimits.join(', ')} NOT enforced on this engine (accepted by acceptUnenforcedLimits)`);
  const user = ctx.sandboxUser(config);
  const dev = options.devcontainer ? await untilCancelled(devcontainerBase(repo, baseCommit, engine, ctx.progress), signal) : undefined;
  if (dev) Object.assign(env, dev.containerEnv);
  const { choice, root, spec } = await chooseTaskTemplate(ctx, repo, baseCommit, config, options.template, !dev);
  throwIfCancelled(signal);
  const template = choice.template;
  ctx.progress(describeChoice(choice));
  // What a template asks for (its model API, its key) is granted when the user picked it, not
  // when a repository's moat.yaml or its files did: the repository must not widen the sandbox.
  const userChoseTemplate = choice.source === 'flag' || choice.source === 'user' || choice.source === 'default';
  const withTemplate = userChoseTemplate ? grantTemplate(config, spec, ctx.env) : config;
  if (!userChoseTemplate && (spec.egress?.length || spec.secret)) {
    ctx.progress(`note: the repository chose template ${template}; its network and key are not granted (pass -t ${template} to grant them)`);
  }
  // The image's tag (the base image's inspect, the template's files) is read while the rest is
  // checked; its error, if any, comes in its turn below. Nothing is built here.
  const imagePlanned = planTemplateImage(engine, {
    template,
    templatesDir: root,
    baseImage: dev?.image ?? config.baseImage,
    uid: user.uid,
    gid: user.gid,
    onProgress: ctx.progress,
    env: ctx.env,
    // A cancelled build is stopped in the engine too, so nothing goes on building after moat exits.
    signal,
  });
  imagePlanned.catch(() => undefined);
  const templateEnv = { ...(dev?.containerEnv ?? {}), ...(userChoseTemplate ? (spec.env ?? {}) : {}) };
  Object.assign(env, templateEnv);
  // A secret's command may wait for a passphrase: a cancel does not wait for it.
  const secrets = await untilCancelled(bindSecrets(withTemplate, ctx.env), signal);
  for (const value of Object.values(secrets.values)) ctx.secretValues.add(value);
  if (userChoseTemplate && spec.secret && !secrets.bound.some((s) => s.name === spec.secret!.name)) {
    ctx.progress(
      `warning: template ${template} needs ${spec.secret.name}, and none is bound: set ${spec.secret.name} in your environment or secrets.${spec.secret.name} in your config (the agent will see only a placeholder either way)`,
    );
  }
  // A bound secret is a grant to talk to its hosts: it brings the network with it.
  const secretHosts = secrets.bound.flatMap((s) => s.hosts);
  const templateHosts = userChoseTemplate ? (spec.egress ?? []) : [];
  const granted = [...secretHosts, ...templateHosts];
  const network = options.network ?? (config.network === 'none' && granted.length > 0 ? 'allowlist' : config.network);
  const rules = config.egress.rules;
  const egress = {
    allow: [...new Set([...config.egress.allow, ...(options.allow ?? []), ...granted])],
    deny: config.egress.deny,
    ...(rules.length > 0 ? { rules } : {}),
  };
  checkEgressRules(network, egress.allow, egress.deny, 'egress rules', config.egressNetwork.allowAddresses, rules);
  if (network !== 'none' && rules.length > 0) {
    ctx.progress(
      `note: method and path rules: moat inspects HTTPS to ${[...new Set(rules.map((r) => r.host))].join(', ')} with this task's own CA; every other host stays end-to-end encrypted`,
    );
  }
  const mounts = await checkMounts(config.mounts, ctx.cwd);
  // Key paths given on the command line are relative to where it was given (the warm server runs elsewhere).
  const sshKeys = [...config.sshKeys, ...(options.sshKeys ?? []).map((key) => (key.startsWith('~/') ? key : resolve(ctx.cwd, key)))];
  if (options.ask && network === 'none') {
    throw new MoatError('E_USAGE', '--ask is for tasks with a network', {
      hint: 'add --network allowlist (or --allow HOST): a task without a network has nothing to ask for',
    });
  }
  if (sshKeys.length > 0 && network === 'none') {
    throw new MoatError('E_USAGE', 'ssh keys are for tasks with a network', { hint: 'allow the ssh hosts with their port, e.g. --allow github.com:22' });
  }
  addGrants(env, { network, egressNetwork: config.egressNetwork, secrets: secrets.bound, rules, sshKeys });
  const isolation = options.isolation ?? config.isolation;
  // gVisor cannot connect a host unix socket, and the task's ssh-agent is one.
  if (isolation === 'gvisor' && sshKeys.length > 0) {
    throw new MoatError('E_USAGE', "the task's ssh-agent cannot reach a sandbox under gVisor", { hint: 'drop the ssh keys, or use isolation: runc' });
  }
  // An engine that does not share moat's filesystem keeps the workspace in a volume of its own.
  if (!engine.capabilities.hostMounts) refuseHostOnly(engine.endpoint, { sshKeys, mounts });
  // Where no host loop mount can cap it, the workspace is an engine volume that the engine caps (disk-plan.ts).
  const diskPlan = await planDisk(engine, { uid: ctx.hostUser.uid, helperImage: config.baseImage, env: ctx.env });
  if (diskPlan.disk === 'none') ctx.progress(`note: the workspace is NOT capped: ${diskPlan.why}; /tmp and home are capped tmpfs`);
  const { tag: image, ensure: ensureImage } = await untilCancelled(imagePlanned, signal);

  const identity = { ...userIdentity, ...config.git };
  // A nameless request of the common shape (no network, no keys, the current HEAD) can take a task
  // the warm server made ahead of time for exactly this shape, and asks for the next one. Named
  // tasks neither take one nor cause one to be made.
  const poolable =
    ctx.pool !== undefined &&
    options.task === undefined &&
    options.base === undefined &&
    network === 'none' &&
    secrets.bound.length === 0 &&
    sshKeys.length === 0 &&
    !dev &&
    !config.limits.timeoutSeconds &&
    !config.limits.idleSeconds;
  const key = poolable
    ? poolKey({
        home: ctx.store.home,
        engine: engine.endpoint,
        repoKey: repo.key,
        repoPath: repo.path,
        baseCommit,
        template,
        image,
        limits: config.limits,
        network,
        egress,
        templateEnv,
        flagEnv,
        mounts,
        user,
        disk: diskPlan.disk,
        env,
        identity,
        // A spare made under one runtime never serves a request for another (gVisor's made ahead like runc's).
        isolation,
        ...(isolation === 'gvisor' ? { runtime: gvisorRuntimeOf(ctx) } : {}),
      })
    : undefined;
  // A spare of this key is ready: its container runs from this image, so the engine is not asked
  // whether the image exists (if the claim fails after all, the task made instead checks first).
  const imageKnown = key !== undefined && ctx.pool!.has(key);
  if (!imageKnown) await untilCancelled(ensureImage(), signal);
  return {
    name,
    repo,
    baseRef,
    baseCommit,
    branch,
    config,
    engine,
    env,
    flagEnv,
    templateEnv,
    unenforcedLimits,
    user,
    ...(dev ? { dev } : {}),
    choice,
    spec,
    image,
    secrets,
    network,
    egress,
    ask: options.ask === true,
    mounts,
    sshKeys,
    isolation,
    diskPlan,
    identity,
    ...(key !== undefined ? { poolKey: key } : {}),
    ...(imageKnown ? { ensureImage } : {}),
  };
}

/**
 * A task the warm server made ahead for exactly this request, made the caller's; and the next
 * one asked for. Undefined when none was ready (or it could not be claimed): the caller makes its own.
 */
async function fromPool(ctx: MoatContext, plan: TaskPlan, key: string, options: UpOptions): Promise<TaskRecord | undefined> {
  const { signal } = options;
  const pool = ctx.pool!;
  // At most the wait for a task being made ahead: short, and then it is ours to claim or discard.
  const pooled = await pool.take(key);
  if (signal?.aborted) {
    await pooled?.discard().catch(() => undefined);
    throw signal.reason;
  }
  pool.want(key, () => makeSpare(ctx.detached(), options, key));
  return pooled ? claimPooled(ctx, plan.repo, pooled, key, signal) : undefined;
}

/**
 * Makes a spare task for the pool: planned again when the server gets to it (made for the server,
 * not for the command that asked, so that command's cancel is not its), and kept only if the
 * request's shape is still the same (the config or HEAD may have changed in between).
 */
async function makeSpare(
  ctx: MoatContext,
  options: UpOptions,
  key: string,
): Promise<{ name: string; discard: () => Promise<void>; createBranch: () => Promise<boolean> } | undefined> {
  // Each host-side step waits while a command is served (TaskPool.quiet): a claim goes first.
  const pause = () => ctx.pool?.quiet() ?? Promise.resolve();
  await pause();
  const plan = await planTask(ctx, { ...options, task: undefined, signal: undefined });
  if (plan.poolKey !== key) return undefined;
  await pause();
  const made = await provisionTask(ctx, plan, { spare: true, pause });
  // The branch's git process is started now, while nothing is served, so the claim forks none.
  await pause();
  const branch = prepareCreateRef(plan.repo.path, `refs/heads/${made.branch}`, made.baseCommit, 'moat: create task branch');
  return {
    name: made.name,
    discard: () => (branch.cancel(), discardTask(ctx, made)),
    createBranch: () => branch.create(),
  };
}

/**
 * Makes what the plan says: the record, the branch (or, for a spare, a ref of its own: its branch
 * comes when it is claimed), the workspace, the way out, the container, the home. Each step that
 * happened is undone if a later one fails or the request is cancelled.
 */
async function provisionTask(
  ctx: MoatContext,
  plan: TaskPlan,
  how: { spare?: boolean; signal?: AbortSignal; /** A spare's wait for the commands being served, between its steps. */ pause?: () => Promise<void> },
): Promise<TaskRecord> {
  const { signal, spare } = how;
  const pause = how.pause ?? (() => Promise.resolve());
  if (plan.ensureImage) await untilCancelled(plan.ensureImage(), signal);
  const { name, repo, branch, baseCommit, engine, env, secrets, network, diskPlan, dev, spec, user, identity } = plan;
  const { disk, inVolume } = diskPlan;
  const record: TaskRecord = {
    name,
    repoKey: repo.key,
    repoPath: repo.path,
    branch,
    baseCommit,
    baseRef: plan.baseRef,
    syncedTip: baseCommit,
    template: plan.choice.template,
    templateChoice: {
      source: plan.choice.source,
      toolchains: plan.choice.toolchains,
      ...(plan.choice.markers.length > 0 ? { markers: plan.choice.markers } : {}),
    },
    image: plan.image,
    limits: plan.config.limits,
    network,
    egress: plan.egress,
    ...(plan.ask ? { ask: true } : {}),
    ...(secrets.bound.length > 0 ? { secrets: secrets.bound } : {}),
    ...(Object.keys(plan.templateEnv).length > 0 ? { templateEnv: plan.templateEnv } : {}),
    ...(plan.flagEnv.length > 0 ? { flagEnv: plan.flagEnv } : {}),
    ...(plan.sshKeys.length > 0 ? { sshKeys: plan.sshKeys } : {}),
    ...(plan.mounts.length > 0 ? { mounts: plan.mounts } : {}),
    user,
    createdAt: new Date().toISOString(),
    disk,
    ...(diskPlan.why ? { diskWhy: diskPlan.why } : {}),
    ...(diskPlan.how ? { diskHow: diskPlan.how } : {}),
    ...(plan.unenforcedLimits.length > 0 ? { unenforcedLimits: plan.unenforcedLimits } : {}),
    ...(inVolume ? { workspace: 'volume' as const } : {}),
    ...(plan.isolation === 'gvisor' ? { isolation: 'gvisor' as const } : {}),
    state: spare ? 'pooled' : 'creating',
    creatorPid: process.pid,
    ...(spare ? { poolKey: plan.poolKey } : {}),
  };
  // A pooled task's workspace is fetched from a ref of its own: its branch comes when it is taken.
  const sourceRef = spare ? poolRef(name) : `refs/heads/${branch}`;
  const rollback = new Rollback();
  try {
    await ctx.store.reserve(record);
    rollback.add(() => ctx.store.remove(record.repoKey, name));
    const workspacePath = ctx.store.workspacePath(record.repoKey, name);
    const taskDir = ctx.store.taskDir(record.repoKey, name);
    // Independent steps side by side; each one that happened is undone if any failed.
    const [branchMade, volumeMade] = await Promise.allSettled([
      repo.createRef(sourceRef, baseCommit),
      createVolume(taskDir, record.limits.diskBytes, record.disk === 'loop' ? 'loop' : 'none'),
    ]);
    if (branchMade.status === 'fulfilled') rollback.add(() => repo.deleteRef(sourceRef, baseCommit));
    // Also after a failure half-way (an image made, its mount failed).
    rollback.add(() => releaseVolume(taskDir));
    for (const step of [branchMade, volumeMade]) if (step.status === 'rejected') throw step.reason;
    throwIfCancelled(signal);
    if (network !== 'none') {
      await openTaskEgress(ctx, record);
      rollback.add(() => removeTaskEgress(ctx, record));
      await pushSecrets(ctx, record, secrets.values);
      await startTaskAgent(ctx, record);
      rollback.add(() => stopTaskAgent(ctx, record));
      throwIfCancelled(signal);
    }
    await pause();
    const id = inVolume
      ? await provisionInVolume(ctx, engine, record, env, rollback, {
          repo,
          branch,
          baseCommit,
          sourceRef,
          identity,
          helperImage: plan.config.baseImage,
          pause,
        })
      : await provisionOnHost(ctx, engine, record, env, rollback, { repo, branch, baseCommit, sourceRef, identity, workspacePath });
    throwIfCancelled(signal);
    await pause();
    await seedHome(engine, id, `${user.uid}:${user.gid}`, homeOf(spec, record.sshKeys), secrets.bound);
    // postCreateCommand may run for minutes; removing the container (the rollback) ends it.
    if (dev?.postCreateCommand) await untilCancelled(postCreate(engine, id, `${user.uid}:${user.gid}`, dev.postCreateCommand, ctx.progress), signal);
    throwIfCancelled(signal);
    record.containerId = id;
    if (spare) {
      await pause();
      await repo.deleteRef(sourceRef, baseCommit);
    } else {
      record.state = 'running';
      delete record.creatorPid;
    }
    await ctx.store.save(record);
    return record;
  } catch (error) {
    const clean = await rollback.run();
    if (signal?.aborted) throw cancelledError(signal, 'up', clean);
    throw error;
  }
}

type Provision = {
  repo: UserRepository;
  branch: string;
  baseCommit: string;
  sourceRef: string;
  identity: { name?: string; email?: string };
  /** The user's base image: a capped volume's helper runs from it, never from the task's image. */
  helperImage?: string;
  /** A spare's wait for the commands being served (TaskPool.quiet), before its seed's bundle and exec. */
  pause?: () => Promise<void>;
};

/**
 * The workspace in a host folder, bind-mounted. The container only needs the folder to exist; it
 * runs nothing until the first exec, after `up` returns. So the clone and the container start overlap.
 */
async function provisionOnHost(
  ctx: MoatContext,
  engine: ContainerEngine,
  record: TaskRecord,
  env: Record<string, string>,
  rollback: Rollback,
  input: Provision & { workspacePath: string },
): Promise<string> {
  await mkdir(input.workspacePath, { mode: 0o755 });
  const container = startContainer(engine, taskSpec(ctx, record, env));
  const workspace = createTaskWorkspace({ ...input, path: input.workspacePath, owner: record.user.uid === ctx.hostUser.uid ? undefined : record.user });
  const [started, cloned] = await Promise.allSettled([container, workspace]);
  if (started.status === 'fulfilled') rollback.add(() => engine.removeContainer(started.value));
  if (started.status === 'rejected') throw started.reason;
  if (cloned.status === 'rejected') throw cloned.reason;
  // Under gVisor the way out is the exec bridge even with the workspace on the host (a no-op otherwise).
  if (egressBridged(record)) {
    rollback.add(() => stopBridge(ctx, record));
    await connectSandbox(ctx, engine, started.value, record);
  }
  return started.value;
}

/**
 * The workspace in a volume of the engine's own (labelled like the task's container, so `gc`
 * finds it), seeded through an exec in the task's container: nothing of the host is mounted.
 */
async function provisionInVolume(
  ctx: MoatContext,
  engine: ContainerEngine,
  record: TaskRecord,
  env: Record<string, string>,
  rollback: Rollback,
  input: Provision,
): Promise<string> {
  const volume = workspaceVolume(record);
  rollback.add(() => engine.removeVolume(volume));
  const cap = record.disk === 'engine' && input.helperImage ? { bytes: record.limits.diskBytes, helperImage: input.helperImage } : undefined;
  await engine.createVolume(volume, taskLabels(ctx, record, 'workspace'), { ...record.user, image: record.image }, cap);
  const id = await startContainer(engine, taskSpec(ctx, record, env));
  rollback.add(() => engine.removeContainer(id));
  const bundleFile = join(ctx.store.taskDir(record.repoKey, record.name), `seed-${process.pid}.bundle`);
  const exec = sandboxExec(engine, id, record);
  const pause = input.pause ?? (() => Promise.resolve());
  await pause();
  await seedVolumeWorkspace({ ...input, bundleFile, exec: async (cmd, stdin) => (await pause(), exec(cmd, stdin)) });
  if (record.network !== 'none') {
    rollback.add(() => stopBridge(ctx, record));
    await connectSandbox(ctx, engine, id, record);
  }
  return id;
}

/** A command in the sandbox as its user, stdin given, stderr's tail kept for the error. */
function sandboxExec(engine: ContainerEngine, id: string, record: TaskRecord) {
  return async (cmd: string[], stdin: Readable): Promise<{ exitCode: number; stderr: string }> => {
    const err = new PassThrough();
    let stderr = '';
    err.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-2000)));
    const exitCode = await engine.exec(id, { cmd, user: `${record.user.uid}:${record.user.gid}` }, { stdin, stdout: new PassThrough().resume(), stderr: err });
    return { exitCode, stderr };
  };
}

/**
 * Where the workspace went with its sandbox (a pod's emptyDir, on Kubernetes), the next sandbox
 * gets it back from what came home: the task branch as it was synced, and the snapshot of
 * uncommitted work over it (files, untracked ones too, as the last sync saw them).
 */
export async function reseedWorkspace(ctx: MoatContext, engine: ContainerEngine, id: string, record: TaskRecord): Promise<void> {
  const repo = await ctx.repo();
  const branchRef = `refs/heads/${record.branch}`;
  const branchTip = await repo.refValue(branchRef);
  const tip = branchTip ?? record.syncedTip;
  const sourceRef = branchTip ? branchRef : record.baseCommit;
  const config = await ctx.effectiveConfig(repo);
  const identity = { ...(await repo.userIdentity()), ...config.git };
  const bundleFile = join(ctx.store.taskDir(record.repoKey, record.name), `seed-${process.pid}.bundle`);
  const exec = sandboxExec(engine, id, record);
  await seedVolumeWorkspace({ repo, branch: record.branch, baseCommit: tip, sourceRef, identity, bundleFile, exec });
  const wip = await repo.refValue(wipRef(record.name));
  if (!wip) return;
  // A snapshot over another commit (the branch was moved since) is left at home, not forced in.
  if ((await repo.refValue(`${wip}^`)) !== tip) {
    ctx.progress(`note: the snapshot of uncommitted work is not over ${record.branch}'s tip; it stays at ${wipRef(record.name)}`);
    return;
  }
  await restoreUncommitted({ repo, wipRef: wipRef(record.name), tip, bundleFile, exec });
}

/** What only an engine that sees moat's host can give a sandbox, refused before anything is made. */
function refuseHostOnly(endpoint: string, wanted: { sshKeys: string[]; mounts: unknown[] }): void {
  const refuse = (what: string, hint: string) =>
    new MoatError('E_USAGE', `${what} needs an engine that shares moat's host, and ${endpoint} does not`, { hint });
  if (wanted.sshKeys.length > 0) throw refuse("the task's ssh-agent", 'drop the ssh keys, or use a local engine');
  if (wanted.mounts.length > 0) throw refuse('read-only host mounts', 'drop mounts from the config, or use a local engine');
}

/**
 * Makes a pooled task the caller's: its branch, its record. A pooled task that is not exactly
 * what was asked for, or whose container has gone, is thrown away and the caller makes its own.
 */
async function claimPooled(
  ctx: MoatContext,
  repo: UserRepository,
  pooled: { name: string; discard: () => Promise<void>; createBranch?: () => Promise<boolean> },
  key: string,
  signal?: AbortSignal,
): Promise<TaskRecord | undefined> {
  const record = await ctx.store.get(repo.key, pooled.name).catch(() => undefined);
  const engine = await ctx.engine();
  if (!record || record.state !== 'pooled' || record.poolKey !== key) {
    await pooled.discard().catch(() => undefined);
    return undefined;
  }
  // gc --all may be removing this spare right now: whoever claims it first has it.
  if (!(await claimSpare(ctx.store.taskDir(record.repoKey, record.name)).catch(() => false))) return undefined;
  // Whether its container still runs is asked while its branch is made (one round trip to the
  // engine beside one git process started ahead: the claim waits for the longer of the two only,
  // and its command still comes after both); a container gone takes that branch along.
  const branch = `refs/heads/${record.branch}`;
  const [running, made] = await Promise.allSettled([
    runningContainer(engine, record),
    // The git process started with the spare, else (or when it refused: git says why) a new one.
    (async () =>
      (await pooled.createBranch?.().catch(() => false)) ||
      (await repo.createRef(branch, record.baseCommit).then(
        () => true,
        () => false,
      )))(),
  ]);
  const branchMade = made.status === 'fulfilled' && made.value;
  if (running.status === 'rejected' || running.value === undefined || !branchMade) {
    if (branchMade) await repo.deleteRef(branch, record.baseCommit).catch(() => false);
    await pooled.discard().catch(() => undefined);
    // The engine did not answer: said as before, by the read that failed.
    if (running.status === 'rejected') throw running.reason;
    return undefined;
  }
  try {
    record.state = 'running';
    record.createdAt = new Date().toISOString();
    delete record.creatorPid;
    delete record.poolKey;
    await ctx.store.save(record);
    return record;
  } catch (error) {
    // The branch made above is this request's: it goes, so that a cancel's "what it had started
    // was removed" (up() above) is true; when it cannot go, the report says so.
    const removed = await repo.deleteRef(`refs/heads/${record.branch}`, record.baseCommit).catch(() => false);
    if (!removed && signal?.aborted) throw cancelledError(signal, 'up', false);
    throw error;
  }
}

/**
 * The user picked this template: bind its key from the user's environment when the user's config
 * does not bind it already (the agent still only sees a placeholder).
 */
function grantTemplate(config: EffectiveConfig, spec: TemplateSpec, env: NodeJS.ProcessEnv): EffectiveConfig {
  const secret = spec.secret;
  if (!secret || config.secrets[secret.name] || !env[secret.name]) return config;
  return {
    ...config,
    secrets: { ...config.secrets, [secret.name]: { from: { env: secret.name }, hosts: secret.hosts, header: secret.header, route: secret.route } },
  };
}

/** Writes the template's config files into the sandbox's home (a tmpfs), as the sandbox user. */
export async function seedHome(
  engine: ContainerEngine,
  id: string,
  user: string,
  spec: TemplateSpec,
  secrets: ReadonlyArray<{ name: string; placeholder: string }> = [],
): Promise<void> {
  const placeholders = new Map(secrets.map((s) => [s.name, s.placeholder]));
  for (const [path, content] of Object.entries(spec.home ?? {})) {
    const stdin = new PassThrough();
    stdin.end(renderHomeFile(content, placeholders));
    const sink = new PassThrough().resume();
    const code = await engine.exec(
      id,
      { cmd: ['sh', '-c', 'mkdir -p "$(dirname "$1")" && cat > "$1"', 'seed', `${SANDBOX_HOME}/${path}`], user },
      { stdin, stdout: sink, stderr: sink },
    );
    if (code !== 0)
      throw new MoatError('E_ENGINE_FAILED', `could not write ${path} into the sandbox's home`, { hint: 'moat reset the task, or check the template' });
  }
}

/** devcontainer.json's postCreateCommand, run inside the sandbox as the sandbox user, never on the host. */
async function postCreate(engine: ContainerEngine, id: string, user: string, cmd: string[], progress: (line: string) => void): Promise<void> {
  const out = new PassThrough();
  let tail = '';
  out.on('data', (chunk: Buffer) => (tail = (tail + chunk.toString('utf8')).slice(-2000)));
  progress(`devcontainer: postCreateCommand ${JSON.stringify(cmd.join(' ')).slice(0, 120)}`);
  const code = await engine.exec(id, { cmd, user, workdir: '/workspace' }, { stdout: out, stderr: out });
  if (code !== 0) {
    throw new MoatError('E_ENGINE_FAILED', `devcontainer postCreateCommand exited ${code}: ${tail.trim().split('\n').pop() ?? ''}`, {
      hint: 'fix the command in devcontainer.json (it runs inside the sandbox, without network unless you allow hosts)',
    });
  }
}
