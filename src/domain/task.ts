import type { Limits } from './limits.js';
import type { NetworkMode } from './egress-policy.js';
import type { BoundSecret } from './bound-secret.js';
import type { RequestRuleSpec } from './request-rules.js';
import type { TemplateSource, Toolchain } from './toolchain.js';

/**
 * Where a task is in its life. `creating` left behind by a crash is what `gc` collects; `pooled`
 * is made ahead by the warm CLI server for the next `run`/`up` and is nobody's task until taken.
 * `removing`: a `run` that left no work, its work read and judged, being removed by the warm server
 * after the caller has its status; one whose server died is collected by `gc` like `creating`.
 */
export type TaskState = 'creating' | 'pooled' | 'running' | 'stopped' | 'exited' | 'missing' | 'removing';

/** What moat records about a task on the host (never inside the sandbox, which the agent controls). */
export interface TaskRecord {
  name: string;
  repoKey: string;
  /** Real path of the user's repository top level. */
  repoPath: string;
  branch: string;
  /** Commit the task started from (full object id). */
  baseCommit: string;
  /** What the user asked for as base (a ref name or "HEAD"), for display. */
  baseRef: string;
  /** Last tip of the task branch that moat brought home; the branch moving from it means the user moved it. */
  syncedTip: string;
  /** A template reference: a name, maybe with toolchains added (`codex+python`). */
  template: string;
  /** Why this template, and the toolchains its image carries (shown by `moat up`). */
  templateChoice?: { source: TemplateSource; toolchains: Toolchain[]; markers?: string[] };
  image: string;
  limits: Limits;
  network: NetworkMode;
  /** Egress rules granted at creation; `moat allow`/`deny` change the live copy the gateway reads. */
  egress?: { allow: string[]; deny: string[]; rules?: RequestRuleSpec[] };
  /** egress.ask turned on for this task by the human's --ask (the user's config may turn it on for all). */
  ask?: boolean;
  /**
   * How the disk cap is enforced for this task: `loop` a host loop mount (moat as root), `engine`
   * an ext4 volume the engine mounts from a loop device (no root needed of moat), `none` no cap.
   */
  disk?: 'loop' | 'engine' | 'none';
  /** Why the workspace has no cap (`disk: 'none'`), as found when the task was made. */
  diskWhy?: string;
  /** How an engine-made cap holds when it is not an ext4 volume (Kubernetes: the kubelet evicts the pod past it). */
  diskHow?: string;
  /** Cgroup limits the engine could not enforce, which the user's config accepted (acceptUnenforcedLimits). */
  unenforcedLimits?: Array<'memory' | 'cpus' | 'pids'>;
  /**
   * Where the task's repository lives: a host folder bind-mounted into the sandbox (absent: the
   * default, local engines), or a volume of the engine's own, seeded and read through exec (engines
   * that do not share moat's filesystem).
   */
  workspace?: 'host' | 'volume';
  /** gVisor's user-space kernel between the sandbox and the host (absent: runc, the default). */
  isolation?: 'gvisor';
  /** Bound secrets: names, placeholders and bindings; values never leave the host's memory. */
  secrets?: BoundSecret[];
  /** Non-secret variables the template set (base URLs and the like), kept for `reset`. */
  templateEnv?: Record<string, string>;
  /** Host folders shown read-only (checked at creation: real paths, not secrets). */
  mounts?: Array<{ source: string; target: string }>;
  /** Keys a dedicated ssh-agent holds for this task (paths on the host). */
  sshKeys?: string[];
  /** Host folder of the task's running ssh-agent socket. */
  sshAgentDir?: string;
  /** --env given at creation: NAME (read from the environment again at reset) or NAME=value. */
  flagEnv?: string[];
  /** uid:gid the sandbox runs as. */
  user: { uid: number; gid: number };
  createdAt: string;
  state: TaskState;
  /** Process that is creating the task (or keeps it pooled, or is removing it), so `gc` can tell a crash from work in progress. */
  creatorPid?: number;
  /** For a pooled task: the shape of request it was made for. */
  poolKey?: string;
  containerId?: string;
  /** Last values of kernel counters, so that a new OOM kill or pids hit can be told apart. */
  counters?: { oomKills: number; pidsMax: number };
}
