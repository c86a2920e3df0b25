import { CoreV1Api, KubeConfig, Log, NetworkingV1Api, VersionApi, type V1Node, type V1Pod } from '@kubernetes/client-node';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { isMoatError, MoatError } from '../errors.js';
import { LABEL } from '../domain/labels.js';
import type { SandboxSpec } from '../domain/sandbox-spec.js';
import type { LimitEnforcement } from '../domain/limit-enforcement.js';
import type {
  BuildInput,
  ContainerEngine,
  ContainerInfo,
  ContainerStats,
  DiskCap,
  DiskCapSupport,
  EngineCapabilities,
  EngineInfo,
  ExecCommand,
  ExecIO,
  LogOptions,
  NodeHealth,
} from './engine.js';
import { envCommand } from './env-command.js';
import { captureExec } from './exec-capture.js';
import { framedCommand, openExecSocket, runOverSocket, stdinFrame, untilPodEnds } from './kubernetes-exec.js';
import { aheadFacts, dropAhead, openAhead, takeAhead } from './kubernetes-exec-ahead.js';
import { WAIT_SCRIPT } from './exec-ahead-script.js';
import { forgetStart, mayRunUnreported, proveStart, reportedRunning, startProven } from './kubernetes-start-proof.js';
import { guardFinished, podEnd, podEndError, PodEndWatches, podNotRunning, watchPod } from './kubernetes-watch.js';
import { LABELS_ANNOTATION, labelSelector, labelsOf, nofileOf, podLabels, podManifest, SANDBOX_CONTAINER } from './kubernetes-pod.js';
import { spareGate } from './background-gate.js';

/** Where moat's tasks go on a cluster, from the user's config (`kubernetes:`) and the environment. */
export interface KubernetesTarget {
  /** A kubeconfig file (default: KUBECONFIG, then ~/.kube/config). */
  kubeconfig?: string;
  context?: string;
  namespace: string;
  /**
   * The Docker engine whose images the nodes run (a one-node cluster's own dockerd): moat builds
   * template images there. Without it, images must already be on the nodes (moat pulls nothing).
   */
  imageEngine?: ContainerEngine;
  /** The RuntimeClass that runs pods under gVisor (isolation: gvisor). */
  gvisorRuntimeClass?: string;
  /**
   * Which pods get an exec opened ahead for their next command (kubernetes-exec-ahead.ts),
   * MOAT_K8S_EXEC_AHEAD: `spares` (the default) only the warm server's spares, whose claim comes
   * seconds later; `on` every pod, after each command; `off` none. Except with `off`, every pod's
   * start is proven by one (its first command takes it). Not every pod by default:
   * measured, `run` without the pool was ~0.7 s slower (its short commands come faster than the
   * next exec opens, and the opens compete for a small node's CPU); docs/benchmarks.md.
   */
  execAhead?: ExecAheadMode;
  /**
   * A command run by an exec opened ahead ends at its status line (exec-ahead-status.ts),
   * not at the exec's own status, which comes ~150-190 ms later. false (MOAT_K8S_STATUS_INBAND=off):
   * the exec's own status is awaited, to measure the difference.
   */
  statusInBand?: boolean;
}

/** Which pods get an exec opened ahead: see {@link KubernetesTarget.execAhead}. */
export type ExecAheadMode = 'spares' | 'on' | 'off';

/** The NetworkPolicy that denies every pod moat makes all traffic: a second layer where the network plugin enforces it. */
const DENY_POLICY = 'moat-sandbox-deny-all';

/** What a command reports when its pod ended under it: killed, as by SIGKILL (128 + 9). */
const EXIT_CONTAINER_GONE = 137;

/** How long a pod may stay unschedulable (no node takes it) before up gives up and says why. */
const UNSCHEDULABLE_MS = 30_000;

/** Execs that need no watch on their pod (startContainer's tries: it watches the pod itself). */
const UNWATCHED = new WeakSet<object>();

/**
 * Kubernetes: a task's sandbox is a Pod (kubernetes-pod.ts), its workspace an emptyDir of that pod
 * (sized; a ConfigMap of the same name stands for the "volume" so that it has labels and `gc`
 * finds it), commands run through the API server's exec stream (kubernetes-exec.ts). A pod cannot
 * be stopped and started again: stopping removes it, and its workspace goes with it (moat brings
 * commits and the snapshot of uncommitted work home before, and seeds the next pod from them).
 * Nothing of moat's host reaches a pod; egress goes through moat's bridge over exec streams.
 */
export class KubernetesEngine implements ContainerEngine {
  readonly kind = 'kubernetes' as const;
  readonly endpoint: string;
  readonly capabilities: EngineCapabilities = { hostMounts: false, hostCgroups: false, workspaceOutlivesSandbox: false };
  readonly sourceFiles: readonly string[];
  private readonly kc: KubeConfig;
  private readonly core: CoreV1Api;
  private readonly namespace: string;
  /** Per pod: what each command needs (its user and open-files limit), read once. */
  private readonly pods = new Map<string, { user: string; nofile?: number }>();
  /** The volumes (config maps) this engine made, as it made them. */
  private readonly volumes = new Map<string, { data?: Record<string, string> }>();
  /** Each pod's end, watched while commands run in it: they end with it. */
  private readonly podEnds: PodEndWatches;
  /**
   * The pods this engine made as a pool's spare (labelled so by the pool, LABEL.madeAhead): an exec
   * waits in each for the claim's command. The claim's request has an engine of its own, which
   * takes the waiting exec and opens no other (its later commands open their own).
   */
  private readonly spares = new Set<string>();

  constructor(private readonly target: KubernetesTarget) {
    this.kc = new KubeConfig();
    // What loadFromDefault reads: KUBECONFIG's files, else ~/.kube/config.
    this.sourceFiles = target.kubeconfig
      ? [target.kubeconfig]
      : (process.env.KUBECONFIG?.split(delimiter).filter(Boolean) ?? [join(homedir(), '.kube', 'config')]);
    try {
      if (target.kubeconfig) this.kc.loadFromFile(target.kubeconfig);
      else this.kc.loadFromDefault();
    } catch (error) {
      throw new MoatError(
        'E_ENGINE_UNREACHABLE',
        `cannot read the kubeconfig ${target.kubeconfig ?? '(KUBECONFIG or ~/.kube/config)'}: ${(error as Error).message}`,
        {
          hint: 'set kubernetes.kubeconfig in your config (or KUBECONFIG) to a readable kubeconfig file',
        },
      );
    }
    if (target.context) {
      if (!this.kc.getContexts().some((c) => c.name === target.context)) {
        throw new MoatError('E_ENGINE_UNREACHABLE', `the kubeconfig has no context "${target.context}"`, {
          hint: `use one of: ${
            this.kc
              .getContexts()
              .map((c) => c.name)
              .join(', ') || '(none)'
          } (kubernetes.context or MOAT_K8S_CONTEXT)`,
        });
      }
      this.kc.setCurrentContext(target.context);
    }
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) {
      throw new MoatError('E_ENGINE_UNREACHABLE', 'the kubeconfig names no cluster', {
        hint: 'set kubernetes.kubeconfig and kubernetes.context in your config',
      });
    }
    this.namespace = target.namespace;
    this.endpoint = `${cluster.server} (namespace ${target.namespace})`;
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.podEnds = new PodEndWatches(this.kc, this.namespace);
  }

  async info(): Promise<EngineInfo> {
    const version = await this.call(() => this.kc.makeApiClient(VersionApi).getCode(), 'read the cluster version');
    const nodes = await this.call(() => this.core.listNode(), 'list the nodes').catch(() => undefined);
    const node = nodes?.items[0]?.status?.nodeInfo;
    return {
      kind: 'kubernetes',
      version: version.gitVersion,
      apiVersion: `${version.major}.${version.minor}`,
      os: node?.osImage ?? '',
      kernel: node?.kernelVersion ?? '',
      storageDriver: '',
      cgroupVersion: '',
      cgroupDriver: '',
      securityOptions: [],
      rootless: false,
      runcVersion: node?.containerRuntimeVersion,
      ...(nodes ? { nodes: nodes.items.map(nodeHealth) } : {}),
    };
  }

  async nodes(): Promise<NodeHealth[] | undefined> {
    const nodes = await this.core.listNode().catch(() => undefined);
    return nodes?.items.map(nodeHealth);
  }

  async ping(): Promise<void> {
    await this.call(() => this.kc.makeApiClient(VersionApi).getCode(), 'reach the cluster');
  }

  async imageId(ref: string): Promise<string | undefined> {
    if (this.target.imageEngine) return this.target.imageEngine.imageId(ref);
    // The nodes report the images they hold; moat never pulls, so one of them must have it.
    const nodes = await this.call(() => this.core.listNode(), 'list the nodes');
    const names = new Set([ref, `docker.io/library/${ref}`, `docker.io/${ref}`]);
    for (const node of nodes.items) {
      for (const image of node.status?.images ?? []) {
        if (image.names?.some((name) => names.has(name))) return image.names.find((name) => name.includes('@')) ?? ref;
      }
    }
    return undefined;
  }

  async buildImage(input: BuildInput): Promise<void> {
    if (!this.target.imageEngine) {
      throw new MoatError('E_IMAGE_MISSING', `image ${input.tag} is not on the cluster's nodes, and moat has no engine to build it for them`, {
        hint: 'set kubernetes.imageEngine in your config to the Docker engine whose images the nodes run, or load the image onto the nodes (docker save … | docker load there)',
      });
    }
    await this.target.imageEngine.buildImage(input);
  }

  async createContainer(spec: SandboxSpec): Promise<string> {
    const hostOnly = [spec.egressMount, spec.helperMount, spec.sshMount, ...spec.readOnlyMounts].filter((m) => m !== undefined);
    if (spec.workspace.kind !== 'volume' || hostOnly.length > 0) {
      throw new MoatError(
        'E_INTERNAL',
        `a pod cannot see moat's host folders (${[spec.workspace.kind === 'host' ? 'workspace' : '', ...hostOnly.map((m) => m.target)].filter(Boolean).join(', ')})`,
      );
    }
    if (spec.isolation.kind === 'gvisor' && !this.target.gvisorRuntimeClass) {
      throw new MoatError('E_ISOLATION_UNAVAILABLE', 'isolation: gvisor needs the RuntimeClass that runs gVisor on this cluster', {
        hint: 'set kubernetes.gvisorRuntimeClass in your config (e.g. gvisor), or use isolation: runc',
      });
    }
    await this.ensureDenyPolicy();
    // The volume this engine recorded a moment ago (up's path) is not read back: its answer is known.
    const volume = this.volumes.get(spec.workspace.name) ?? (await this.readVolume(spec.workspace.name));
    const bytes = Number(volume?.data?.bytes);
    // The user's base image, as createVolume was given it: the task's own image is never trusted with the guard.
    const helperImage = volume?.data?.helperImage;
    if (!helperImage) throw new MoatError('E_INTERNAL', `the workspace volume ${spec.workspace.name} of pod ${spec.name} was not made by moat's createVolume`);
    const body = podManifest(spec, {
      helperImage,
      workspaceBytes: Number.isInteger(bytes) && bytes > 0 ? bytes : undefined,
      gvisorRuntimeClass: this.target.gvisorRuntimeClass,
    }) as V1Pod;
    // An exec left waiting in an earlier pod of this name (reset, a helper) is not this one's.
    dropAhead(this.aheadKey(spec.name));
    forgetStart(this.aheadKey(spec.name));
    const pod = await this.createPod(body, spec.name);
    this.pods.set(spec.name, { user: spec.user, nofile: spec.limits.nofile });
    if (spec.labels[LABEL.madeAhead] === 'true') this.spares.add(spec.name);
    return pod.metadata?.name ?? spec.name;
  }

  /**
   * A pod starts once created: this waits until its sandbox runs, and says why when it will not.
   * The pod is watched (no polling delay), and once its network guard has finished, an exec of
   * `true` (in a pod that gets one, {@link opensAhead}: the exec the first command will use, until its shell says
   * it runs) is tried on each change and every 200 ms: the kubelet reports a started container
   * only at its next relist (up to a second later), and a command that runs is the proof that counts.
   */
  async startContainer(id: string): Promise<void> {
    const deadline = Date.now() + 180_000;
    let unschedulableSince: number | undefined;
    let pod = await this.call(() => this.core.readNamespacedPod({ name: id, namespace: this.namespace }), `read pod ${id}`);
    const changes = await watchPod(this.kc, this.namespace, id, pod.metadata?.resourceVersion);
    try {
      for (;;) {
        const verdict = startVerdict(pod);
        if (verdict === 'running') {
          if (this.startsAhead()) {
            const facts = await this.podFacts(id);
            void this.untilQuiet(id).then(() => this.openAhead(id, facts));
          }
          return;
        }
        if (verdict.failed) throw verdict.failed;
        if (verdict.unschedulable) {
          unschedulableSince ??= Date.now();
          if (Date.now() - unschedulableSince > UNSCHEDULABLE_MS) {
            const notReady = await this.notReadyNodes();
            const said = notReady.length > 0 ? `; not Ready: ${notReady.join(', ')}` : '';
            throw new MoatError('E_ENGINE_FAILED', `no node can take pod ${id} within ${UNSCHEDULABLE_MS / 1000} s: ${oneLine(verdict.unschedulable)}${said}`, {
              hint: 'check the nodes (kubectl get nodes; kubectl describe pod): a node not Ready, or not enough CPU or memory',
              details: { pod: id, notReadyNodes: notReady },
            });
          }
        }
        if (Date.now() > deadline) {
          throw new MoatError('E_ENGINE_FAILED', `pod ${id} did not start within 180 s (${verdict.waiting ?? 'pending'})`, {
            hint: 'check it with kubectl describe pod, and the nodes with kubectl get nodes',
          });
        }
        const guarded = guardFinished(pod);
        if (guarded) await this.untilQuiet(id);
        // The proof is the exec opened ahead for the first command (the seed): its shell runs.
        if (guarded && (this.startsAhead() ? await this.openAhead(id, await this.podFacts(id)) : await this.answers(id))) {
          // Ahead of the pod's status (kubernetes-start-proof.ts): inspectContainer says running.
          proveStart(this.aheadKey(id), pod.metadata?.uid);
          return;
        }
        const next = await changes.next(guarded ? 200 : 1000);
        // No watch (refused, or ended): each wait ends with a read instead.
        pod = next ?? (changes.open() ? pod : await this.call(() => this.core.readNamespacedPod({ name: id, namespace: this.namespace }), `read pod ${id}`));
      }
    } finally {
      changes.stop();
    }
  }

  /** The nodes whose Ready condition is not True (unknown when they cannot be listed: none said). */
  private async notReadyNodes(): Promise<string[]> {
    return ((await this.nodes()) ?? []).filter((node) => !node.ready).map((node) => node.name);
  }

  /** Whether this engine keeps an exec waiting in the pod for its next command (MOAT_K8S_EXEC_AHEAD). */
  private opensAhead(id: string): boolean {
    const mode = this.target.execAhead ?? 'spares';
    return mode === 'on' || (mode === 'spares' && this.spares.has(id));
  }

  /**
   * Whether a pod's start is proven by an exec opened ahead, which the first command (the seed)
   * then takes, in every pod (not only spares): the proof and the seed on one exec, one setup
   * fewer on a pool-less `run`. Only later commands depend on {@link opensAhead}.
   */
  private startsAhead(): boolean {
    return this.target.execAhead !== 'off';
  }

  /** A spare's next step waits while the warm server serves a command (background-gate.ts); any other pod's goes at once. */
  private untilQuiet(id: string): Promise<void> {
    return this.spares.has(id) ? spareGate() : Promise.resolve();
  }

  private aheadKey(id: string): string {
    return `${this.kc.getCurrentCluster()?.server ?? ''}|${this.kc.getCurrentUser()?.name ?? ''}|${this.namespace}|${id}`;
  }

  /** Whether a command runs in the pod's sandbox already (without an exec opened ahead, the proof of its start). */
  private async answers(id: string): Promise<boolean> {
    const facts = await this.podFacts(id);
    const sink = new PassThrough().resume();
    const io = { stdout: sink, stderr: sink };
    // startContainer watches this pod already, and tries `true` every 200 ms: no watch of its own per try.
    UNWATCHED.add(io);
    return this.exec(id, { cmd: ['true'], user: facts.user }, io).then(
      (code) => code === 0,
      () => false,
    );
  }

  /** An exec opened ahead into a pod that answers, for its next command without a terminal. */
  private openAhead(id: string, facts: { user: string; nofile?: number }): Promise<boolean> {
    const query = new URLSearchParams({ container: SANDBOX_CONTAINER, stdout: 'true', stderr: 'true', stdin: 'true', tty: 'false' });
    for (const arg of ['/bin/sh', '-c', WAIT_SCRIPT, 'moat-wait']) query.append('command', arg);
    return openAhead(
      this.kc,
      this.aheadKey(id),
      {
        namespace: this.namespace,
        name: id,
        path: `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods/${encodeURIComponent(id)}/exec?${query.toString()}`,
      },
      facts,
    );
  }

  async inspectContainer(idOrName: string): Promise<ContainerInfo | undefined> {
    const pod = await this.readPod(idOrName);
    return pod ? containerInfo(pod, await this.startedUnreported(pod)) : undefined;
  }

  /**
   * Whether a pod runs whose status does not say so yet (kubernetes-start-proof.ts): its start
   * proven in this process, else asked (a `true` in its sandbox; only in the second or so between
   * a start and the kubelet's report of it, so another process's `up` is covered too).
   */
  private async startedUnreported(pod: V1Pod): Promise<boolean> {
    const name = pod.metadata?.name ?? '';
    const key = this.aheadKey(name);
    if (reportedRunning(pod)) forgetStart(key);
    if (!mayRunUnreported(pod)) return false;
    if (startProven(key, pod)) return true;
    const answers = await this.answers(name);
    if (answers) proveStart(key, pod.metadata?.uid);
    return answers;
  }

  /** A pod cannot be stopped and kept: stopping it removes it (its workspace with it). */
  async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    dropAhead(this.aheadKey(id));
    forgetStart(this.aheadKey(id));
    this.spares.delete(id);
    await this.deletePod(id, timeoutSeconds);
  }

  /**
   * Deleted with no grace and not waited for: the API server drops a pod deleted with grace 0 at
   * once, and its containers' end is the kubelet's business (nothing of the task's work is in them
   * any more: it was brought home first). A pod of the same name made next (reset, a helper) waits
   * in createContainer for a leftover instead, and `gc` and `ls` find one that stays.
   */
  async removeContainer(id: string): Promise<void> {
    dropAhead(this.aheadKey(id));
    forgetStart(this.aheadKey(id));
    await this.deletePod(id, 0);
    this.pods.delete(id);
    this.spares.delete(id);
  }

  async listContainers(labels: Record<string, string>): Promise<ContainerInfo[]> {
    const list = await this.call(() => this.core.listNamespacedPod({ namespace: this.namespace, labelSelector: labelSelector(labels) }), 'list pods');
    return list.items.map((pod) => containerInfo(pod));
  }

  /**
   * The workspace lives in its pod (an emptyDir, sized by `cap`); this ConfigMap stands for it,
   * with the labels and the size, so that the next pod gets the same cap and `gc` finds it.
   */
  async createVolume(name: string, labels: Record<string, string>, _owner: { uid: number; gid: number; image: string }, cap?: DiskCap): Promise<void> {
    const body = {
      metadata: { name, labels: podLabels(labels), annotations: { [LABELS_ANNOTATION]: JSON.stringify(labels) } },
      data: { bytes: cap ? String(cap.bytes) : '', helperImage: cap?.helperImage ?? '' },
    };
    try {
      await this.core.createNamespacedConfigMap({ namespace: this.namespace, body });
      this.volumes.set(name, body);
    } catch (error) {
      if (statusOf(error) !== 409) throw this.wrap(error, `record volume ${name}`);
    }
  }

  /** An emptyDir's sizeLimit: the kubelet evicts a pod whose workspace grows past it (not ENOSPC: the task ends). */
  async diskCapSupport(): Promise<DiskCapSupport> {
    return { ok: true, how: "the pod's emptyDir sizeLimit: the kubelet evicts a task that writes past it (it ends; no ENOSPC)" };
  }

  async listVolumes(labels: Record<string, string>): Promise<Array<{ name: string; labels: Record<string, string> }>> {
    const list = await this.call(() => this.core.listNamespacedConfigMap({ namespace: this.namespace, labelSelector: labelSelector(labels) }), 'list volumes');
    return list.items.map((item) => ({ name: item.metadata?.name ?? '', labels: labelsOf(item.metadata) }));
  }

  async removeVolume(name: string): Promise<void> {
    this.volumes.delete(name);
    try {
      await this.core.deleteNamespacedConfigMap({ name, namespace: this.namespace });
    } catch (error) {
      if (statusOf(error) !== 404) throw this.wrap(error, `remove volume ${name}`);
    }
  }

  async parkVolume(): Promise<void> {
    // Nothing held on a node while no pod runs: the emptyDir went with its pod.
  }

  async exec(id: string, command: ExecCommand, io: ExecIO): Promise<number> {
    const pod = await this.podFacts(id);
    if (command.user !== pod.user) {
      // A pod runs every command as its one user: there is no switching (no capability for it).
      throw new MoatError('E_INTERNAL', `a command as ${command.user} cannot run in pod ${id}, whose user is ${pod.user}`);
    }
    const tty = command.tty ?? false;
    // exec has no working directory or environment of its own: env(1) gives both, prlimit the rlimit.
    const inner = envCommand(command.cmd, command.workdir, command.env);
    const cmd = framedCommand(pod.nofile ? ['/usr/bin/prlimit', `--nofile=${pod.nofile}:${pod.nofile}`, '--', ...inner] : inner, io.stdin !== undefined, tty);
    const query = new URLSearchParams({
      container: SANDBOX_CONTAINER,
      stdout: 'true',
      stderr: String(!tty),
      // A terminal always has its input side: without it the kubelet (1.20, dockershim) passes no output back.
      stdin: String(io.stdin !== undefined || tty),
      tty: String(tty),
    });
    for (const arg of cmd) query.append('command', arg);
    const path = `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods/${encodeURIComponent(id)}/exec?${query.toString()}`;
    // Joined before the stream opens, so an end while it opens is not missed.
    const podWatch = UNWATCHED.has(io) ? undefined : this.podEnds.join(id);
    // Without a terminal, an exec waiting in the pod runs it (kubernetes-exec-ahead.ts), whichever
    // engine opened it (a spare's maker; the claim takes it); stdin then always travels framed
    // (none: its end at once). The next one is opened ahead only in a pod that gets one.
    const words = pod.nofile ? ['/usr/bin/prlimit', `--nofile=${pod.nofile}:${pod.nofile}`, '--', ...inner] : inner;
    let taken;
    try {
      taken =
        // A probe of the pod's start (answers) never takes the exec that waits for a command.
        tty || this.target.execAhead === 'off' || UNWATCHED.has(io)
          ? undefined
          : await takeAhead(this.aheadKey(id), words, async () => {
              const current = await this.readPod(id);
              return current?.metadata?.deletionTimestamp == null ? current?.metadata?.uid : undefined;
            });
    } catch (error) {
      podWatch?.leave();
      throw error;
    }
    let socket = taken?.socket;
    if (socket && !io.stdin) socket.send(stdinFrame(Buffer.alloc(0)));
    if (!socket) {
      try {
        socket = await openExecSocket(this.kc, path);
      } catch (error) {
        podWatch?.leave();
        throw await this.unlessEnded(this.wrapExec(error, id), id);
      }
    }
    const running = runOverSocket(
      socket,
      { stdin: io.stdin, stdout: io.stdout, stderr: io.stderr, tty, size: io.size, onResize: io.onResize },
      'the command',
      taken ? { mark: taken.mark, early: this.target.statusInBand !== false } : undefined,
    );
    const finished = this.unlessEvicted(
      id,
      podWatch
        ? untilPodEnds(
            socket,
            running,
            podWatch.ended.then((end) => podEndError(id, end)),
          ).finally(() => podWatch.leave())
        : running,
    );
    // The next command's exec is opened once this one has ended, not while its output is on its
    // way (a claim's first command): on a small node an exec being made competes with it, through
    // the same API server, kubelet and runtime.
    if (this.opensAhead(id)) {
      void finished
        .catch(() => undefined)
        .then(() => this.untilQuiet(id))
        .then(() => {
          // Asked again after the waits: a spare removed meanwhile is no spare any more.
          if (this.opensAhead(id)) void this.openAhead(id, pod);
        });
    }
    if (!io.endWithContainer) return finished;
    const gone = await Promise.race([finished.then(() => false), this.whenStopped(id, finished)]);
    if (!gone) return finished;
    socket.terminate();
    await finished.catch(() => undefined);
    return EXIT_CONTAINER_GONE;
  }

  /**
   * A command killed (137) or cut off may have gone with its pod (evicted by the kubelet: a
   * workspace past its emptyDir's sizeLimit ends that way, with no ENOSPC first; or deleted) before
   * the pod's watch said so. Then that is what the caller hears. The kubelet reports an eviction
   * before it kills, so one read tells, a second one half a second later if the first finds the
   * pod still running.
   */
  private async unlessEvicted(id: string, finished: Promise<number>): Promise<number> {
    const outcome = await finished.then(
      (code) => ({ code }),
      (error: unknown) => ({ error }),
    );
    if ('code' in outcome && outcome.code !== EXIT_CONTAINER_GONE) return outcome.code;
    // Already the pod's end, as its watch told it.
    if ('error' in outcome && isMoatError(outcome.error) && outcome.error.details?.podEnd) throw outcome.error;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      // Unreadable (the API server away): the command's own outcome stands.
      const pod = await this.readPod(id).then(
        (found) => ({ found }),
        () => undefined,
      );
      if (!pod) break;
      const end = podEnd(pod.found);
      // The kubelet refused the command (its container gone): it never ran, the pod had ended.
      if (end && 'error' in outcome && isMoatError(outcome.error) && outcome.error.details?.ran === false) throw podNotRunning(id, end);
      if (end) throw podEndError(id, end);
      if (!pod.found || !containerInfo(pod.found).running) break;
      if (attempt === 0) await sleep(500);
    }
    if ('error' in outcome) throw outcome.error;
    return outcome.code;
  }

  execCapture(id: string, command: ExecCommand, maxBytes?: number): Promise<{ exitCode: number; stdout: Buffer; stderr: string }> {
    return captureExec(this, id, command, maxBytes);
  }

  /** Read inside the sandbox from its own cgroup files (no metrics server is assumed); CPU over half a second. */
  async stats(id: string): Promise<ContainerStats | undefined> {
    const pod = await this.readPod(id);
    if (!pod || containerInfo(pod).running !== true) return undefined;
    const facts = await this.podFacts(id);
    const run = await this.execCapture(id, { cmd: ['/bin/sh', '-c', STATS_SCRIPT], user: facts.user }, 65536).catch(() => undefined);
    if (!run || run.exitCode !== 0) return undefined;
    return parseStats(run.stdout.toString('utf8'));
  }

  async logs(id: string, options: LogOptions, out: Writable): Promise<void> {
    if (!options.follow) {
      const text = await this.call(
        () =>
          this.core.readNamespacedPodLog({
            name: id,
            namespace: this.namespace,
            container: SANDBOX_CONTAINER,
            ...(options.tail !== undefined ? { tailLines: options.tail } : {}),
          }),
        'read logs',
      );
      out.write(text);
      return;
    }
    if (options.signal?.aborted) return;
    const sink = new PassThrough();
    sink.pipe(out, { end: false });
    await new Promise<void>((resolve, reject) => {
      new Log(this.kc)
        .log(this.namespace, id, SANDBOX_CONTAINER, sink, { follow: true, ...(options.tail !== undefined ? { tailLines: options.tail } : {}) })
        .then((controller) => {
          options.signal?.addEventListener('abort', () => controller.abort(), { once: true });
          sink.on('finish', () => resolve());
          sink.on('close', () => resolve());
        }, reject);
    }).catch((error: unknown) => {
      if (!options.signal?.aborted) throw this.wrap(error, 'read logs');
    });
  }

  /**
   * Kubernetes sets no process limit per pod or container from the pod's spec (only the kubelet's
   * node-wide podPidsLimit, which moat cannot read or set): said, never claimed.
   */
  async limitEnforcement(): Promise<LimitEnforcement> {
    return {
      unenforced: ['pids'],
      why: "a Pod's spec carries no process limit (only the kubelet's node-wide podPidsLimit does)",
      remedy: "have the cluster's kubelets set podPidsLimit (it bounds every pod of the node), or use Docker or Podman",
    };
  }

  /**
   * Asked before every pod this engine makes, not once per engine: a warm server keeps its engine
   * from one command to the next, and a policy deleted meanwhile (by hand, or with its namespace)
   * must not leave the next pod without it. One request, off a claim's path (spares are made ahead).
   */
  private async ensureDenyPolicy(): Promise<void> {
    const body = {
      metadata: { name: DENY_POLICY, labels: { [LABEL.role]: 'policy' } },
      spec: { podSelector: { matchExpressions: [{ key: LABEL.task, operator: 'Exists' }] }, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: [] },
    };
    try {
      await this.kc.makeApiClient(NetworkingV1Api).createNamespacedNetworkPolicy({ namespace: this.namespace, body });
    } catch (error) {
      if (statusOf(error) !== 409) throw this.wrap(error, 'create the NetworkPolicy that denies the sandboxes all traffic');
    }
  }

  private async readVolume(name: string) {
    try {
      return await this.core.readNamespacedConfigMap({ name, namespace: this.namespace });
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.wrap(error, `read volume ${name}`);
    }
  }

  private async readPod(name: string): Promise<V1Pod | undefined> {
    try {
      return await this.core.readNamespacedPod({ name, namespace: this.namespace });
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.wrap(error, `read pod ${name}`);
    }
  }

  private async podFacts(id: string): Promise<{ user: string; nofile?: number }> {
    const known = this.pods.get(id) ?? aheadFacts(this.aheadKey(id));
    if (known) return known;
    const pod = await this.readPod(id);
    if (!pod) throw new MoatError('E_ENGINE_FAILED', `pod ${id} is gone`, { hint: 'moat reset TASK makes a new one', cause: { statusCode: 404 } });
    const context = pod.spec?.securityContext;
    const facts = { user: `${context?.runAsUser ?? 0}:${context?.runAsGroup ?? 0}`, nofile: nofileOf(pod.metadata?.annotations) };
    this.pods.set(id, facts);
    return facts;
  }

  /**
   * Creates the pod; one of the same name still there (removed a moment ago and not yet gone, as
   * removeContainer does not wait) is waited for, up to a minute, then the create is tried again.
   */
  private async createPod(body: V1Pod, name: string): Promise<V1Pod> {
    for (let waited = 0; ; waited += 200) {
      let conflict: unknown;
      try {
        return await this.core.createNamespacedPod({ namespace: this.namespace, body });
      } catch (error) {
        if (statusOf(error) !== 409 || waited >= 60_000) throw this.wrap(error, `create pod ${name}`);
        conflict = error;
      }
      const old = await this.readPod(name);
      // One that is not on its way out is a name taken for good: that is the caller's error to hear.
      if (old && old.metadata?.deletionTimestamp === undefined) throw this.wrap(conflict, `create pod ${name}`);
      if (old) await sleep(200);
    }
  }

  private async deletePod(id: string, grace: number): Promise<void> {
    try {
      await this.core.deleteNamespacedPod({ name: id, namespace: this.namespace, gracePeriodSeconds: grace });
    } catch (error) {
      if (statusOf(error) !== 404) throw this.wrap(error, `remove pod ${id}`);
    }
  }

  private async whenStopped(id: string, until: Promise<unknown>): Promise<boolean> {
    let settled = false;
    void until.then(
      () => (settled = true),
      () => (settled = true),
    );
    while (!settled) {
      await sleep(1000);
      if (settled) return false;
      const info = await this.inspectContainer(id).catch(() => undefined);
      if (!info?.running) return true;
    }
    return false;
  }

  private async call<T>(fn: () => Promise<T>, what: string): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.wrap(error, what);
    }
  }

  /**
   * A refused exec into a pod that has ended (evicted, failed, being deleted) is a task not running,
   * whatever words the API server or the kubelet chose for it: said as wrapExec says "not running".
   */
  private async unlessEnded(refused: MoatError, id: string): Promise<MoatError> {
    const status = (refused.cause as { statusCode?: number } | undefined)?.statusCode;
    if (status === 404 || status === 409) return refused;
    const pod = await this.readPod(id).then(
      (found) => ({ found }),
      () => undefined,
    );
    const end = pod && podEnd(pod.found);
    return end ? podNotRunning(id, end) : refused;
  }

  private wrapExec(error: unknown, id: string): MoatError {
    const status = (error as { statusCode?: number }).statusCode;
    const body = String((error as { body?: string }).body ?? '');
    if (status === 404 || (status === 400 && /not found|not running|terminated|completed/i.test(body))) {
      // Gone, or not running: the caller says "not running" (the same statuses as Docker's).
      return new MoatError('E_ENGINE_FAILED', `pod ${id} is not running`, {
        hint: 'moat reset TASK makes a new one',
        cause: { statusCode: status === 404 ? 404 : 409 },
      });
    }
    if (status) return this.wrap(Object.assign(new Error(body || `exec answered ${status}`), { code: status, body }), `exec in pod ${id}`);
    return this.wrap(error, `exec in pod ${id}`);
  }

  private wrap(error: unknown, what: string): MoatError {
    if ((error as { isMoatError?: boolean }).isMoatError) return error as MoatError;
    const status = statusOf(error);
    const code = (error as NodeJS.ErrnoException).code ?? (error as { cause?: { code?: string } }).cause?.code;
    if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ETIMEDOUT|ENOTFOUND|EPIPE|ENOENT)$/.test(code)) {
      return new MoatError('E_ENGINE_UNREACHABLE', `the Kubernetes API server at ${this.endpoint} is not answering`, {
        hint: 'check the cluster (kubectl get nodes) and kubernetes.kubeconfig/context in your config',
        cause: error,
      });
    }
    const message = messageOf(error);
    if (status === 401 || status === 403) {
      return new MoatError('E_ENGINE_PERMISSION', `the cluster refused to ${what}: ${message}`, {
        hint: `your kubeconfig's user needs to create pods, pods/exec, configmaps and networkpolicies in namespace ${this.namespace} (kubectl auth can-i create pods -n ${this.namespace})`,
        cause: error,
      });
    }
    if (status === 404 && /namespaces? .*not found/i.test(message)) {
      return new MoatError('E_ENGINE_FAILED', `could not ${what}: namespace ${this.namespace} does not exist`, {
        hint: `create it (kubectl create namespace ${this.namespace}) or set kubernetes.namespace in your config`,
        cause: error,
      });
    }
    return new MoatError('E_ENGINE_FAILED', `could not ${what}: ${message}`, { hint: 'check the cluster with `moat doctor` and kubectl', cause: error });
  }
}

/** Where a starting pod is: running, still on its way, or failed (and why, in moat's words). */
export function startVerdict(pod: V1Pod): 'running' | { failed?: MoatError; unschedulable?: string; waiting?: string } {
  const status = pod.status;
  if (reportedRunning(pod)) return 'running';
  const sandbox = status?.containerStatuses?.find((c) => c.name === SANDBOX_CONTAINER);
  const image = pod.spec?.containers[0]?.image ?? '';
  for (const container of [...(status?.initContainerStatuses ?? []), ...(status?.containerStatuses ?? [])]) {
    const reason = container.state?.waiting?.reason ?? '';
    if (/^(ErrImageNeverPull|ErrImagePull|ImagePullBackOff|InvalidImageName)$/.test(reason)) {
      return {
        failed: new MoatError('E_IMAGE_MISSING', `image ${image} is not on the node that got the task (${reason})`, {
          hint: 'load it onto the nodes (docker save IMAGE | docker load there), or set kubernetes.imageEngine to the engine that feeds them',
        }),
      };
    }
    if (/^(CreateContainerConfigError|CreateContainerError|RunContainerError)$/.test(reason)) {
      return {
        failed: new MoatError('E_ENGINE_FAILED', `pod ${pod.metadata?.name} cannot start: ${reason}: ${container.state?.waiting?.message ?? ''}`.trim(), {
          hint: 'kubectl describe pod says more',
        }),
      };
    }
    const ended = container.state?.terminated;
    if (ended && (ended.exitCode !== 0 || container.name === SANDBOX_CONTAINER)) {
      const what = container.name === SANDBOX_CONTAINER ? 'the sandbox ended as it started' : "the pod's network could not be taken away";
      return {
        failed: new MoatError(
          'E_ENGINE_FAILED',
          `pod ${pod.metadata?.name}: ${what} (${ended.reason ?? 'exit'} ${ended.exitCode}${ended.message ? `: ${ended.message.trim().slice(0, 200)}` : ''})`,
          {
            hint: 'kubectl logs and kubectl describe pod say more',
          },
        ),
      };
    }
  }
  if (status?.phase === 'Failed' || status?.phase === 'Succeeded') {
    return {
      failed: new MoatError('E_ENGINE_FAILED', `pod ${pod.metadata?.name} ended as it started (${status.reason ?? status.phase}: ${status.message ?? ''})`, {
        hint: 'kubectl describe pod says more',
      }),
    };
  }
  const scheduled = status?.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') return { unschedulable: scheduled.message ?? 'unschedulable' };
  return { waiting: sandbox?.state?.waiting?.reason ?? status?.phase };
}

/**
 * A pod in moat's terms: running while its sandbox runs; its end (exit status, OOM, eviction) once
 * it ended. `proven`: its sandbox was proven to run before the status says so (kubernetes-start-proof.ts).
 */
export function containerInfo(pod: V1Pod, proven = false): ContainerInfo {
  const sandbox = pod.status?.containerStatuses?.find((c) => c.name === SANDBOX_CONTAINER);
  const ended = sandbox?.state?.terminated;
  const phase = pod.status?.phase ?? 'Pending';
  const deleting = pod.metadata?.deletionTimestamp !== undefined;
  const evicted = pod.status?.reason === 'Evicted';
  const running = !deleting && (reportedRunning(pod) || (proven && mayRunUnreported(pod)));
  return {
    id: pod.metadata?.name ?? '',
    name: pod.metadata?.name ?? '',
    image: pod.spec?.containers[0]?.image ?? '',
    state: deleting ? 'removing' : running ? 'running' : phase === 'Pending' ? 'created' : 'exited',
    running,
    ...(ended ? { exitCode: ended.exitCode } : evicted ? { exitCode: EXIT_CONTAINER_GONE } : {}),
    oomKilled: ended?.reason === 'OOMKilled',
    ...(sandbox?.state?.running?.startedAt ? { startedAt: new Date(sandbox.state.running.startedAt).toISOString() } : {}),
    ...(ended?.finishedAt ? { finishedAt: new Date(ended.finishedAt).toISOString() } : {}),
    labels: labelsOf(pod.metadata),
    ...(pod.spec?.nodeName ? { node: pod.spec.nodeName } : {}),
  };
}

/** Whether a node takes pods (its Ready condition is True), and the node controller's or kubelet's words when not. */
function nodeHealth(node: V1Node): NodeHealth {
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  const name = node.metadata?.name ?? '';
  if (ready?.status === 'True') return { name, ready: true };
  return { name, ready: false, why: oneLine(`${ready?.status === 'False' ? 'NotReady' : 'Ready unknown'}${ready?.message ? `: ${ready.message}` : ''}`) };
}

/** Prints the sandbox's cgroup figures (v1 or v2), CPU time twice half a second apart. */
const STATS_SCRIPT = `
cpu() { cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null || awk '/^usage_usec/ {print $2 * 1000}' /sys/fs/cgroup/cpu.stat 2>/dev/null; }
a=$(cpu); sleep 0.5; b=$(cpu)
echo "cpu $a $b"
echo "mem $(cat /sys/fs/cgroup/memory/memory.usage_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.current)"
echo "limit $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "inactive $(awk '/^(total_inactive_file|inactive_file) / {print $2; exit}' /sys/fs/cgroup/memory/memory.stat /sys/fs/cgroup/memory.stat 2>/dev/null)"
echo "pids $(cat /sys/fs/cgroup/pids/pids.current 2>/dev/null || cat /sys/fs/cgroup/pids.current 2>/dev/null || echo 0)"
`;

export function parseStats(text: string): ContainerStats {
  const field = (name: string) => new RegExp(`^${name} (.*)$`, 'm').exec(text)?.[1]?.trim().split(/\s+/) ?? [];
  const num = (value: string | undefined) => (value && /^[0-9]+$/.test(value) ? Number(value) : 0);
  const [a, b] = field('cpu').map(num);
  const memory = num(field('mem')[0]);
  return {
    cpuPercent: a !== undefined && b !== undefined && b > a ? ((b - a) / 0.5e9) * 100 : 0,
    memoryBytes: Math.max(0, memory - num(field('inactive')[0])),
    memoryLimitBytes: num(field('limit')[0]),
    pids: num(field('pids')[0]),
  };
}

function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

function messageOf(error: unknown): string {
  const body = (error as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message) return parsed.message;
    } catch {
      // Not JSON: the text itself.
    }
    return body.slice(0, 300);
  }
  if (body && typeof body === 'object' && 'message' in body) return String((body as { message: unknown }).message);
  return String((error as Error).message ?? error).slice(0, 300);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().slice(0, 300);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
