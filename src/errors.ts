/**
 * One error family for everything moat reports. Each error has a stable code (for scripts and
 * `--json`), a one-line message, a hint that says what to do, and the exit code the CLI returns.
 */

/** Exit codes, documented in README.md. `exec`, `run` and `shell` pass the child's status through instead. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  config: 3,
  engine: 4,
  git: 5,
  notFound: 6,
  conflict: 7,
  internal: 70,
  /** Cancelled by Ctrl-C (SIGINT) or SIGTERM: 128 + the signal's number, as a shell reports a killed process. */
  interrupted: 130,
  terminated: 143,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorCode =
  | 'E_USAGE'
  | 'E_CONFIG_INVALID'
  | 'E_CONFIG_WIDENS'
  | 'E_TASK_NAME'
  | 'E_TASK_EXISTS'
  | 'E_TASK_NOT_FOUND'
  | 'E_TASK_NOT_RUNNING'
  | 'E_ENGINE_MISSING'
  | 'E_ENGINE_UNREACHABLE'
  | 'E_ENGINE_PERMISSION'
  | 'E_ENGINE_FAILED'
  | 'E_ISOLATION_UNAVAILABLE'
  | 'E_LIMITS_UNENFORCED'
  | 'E_IMAGE_BUILD'
  | 'E_IMAGE_MISSING'
  | 'E_TEMPLATE_UNKNOWN'
  | 'E_NOT_GIT_REPO'
  | 'E_GIT_HEAD'
  | 'E_GIT_REF'
  | 'E_GIT_FAILED'
  | 'E_SYNC_FAILED'
  | 'E_DIRTY_CHECKOUT'
  | 'E_MERGE_CONFLICT'
  | 'E_BRANCH_MOVED'
  | 'E_CONFIRM'
  | 'E_INTERRUPTED'
  | 'E_TERMINATED'
  | 'E_INTERNAL';

const exitFor: Record<ErrorCode, ExitCodeValue> = {
  E_USAGE: ExitCode.usage,
  E_CONFIG_INVALID: ExitCode.config,
  E_CONFIG_WIDENS: ExitCode.config,
  E_TASK_NAME: ExitCode.usage,
  E_TASK_EXISTS: ExitCode.conflict,
  E_TASK_NOT_FOUND: ExitCode.notFound,
  E_TASK_NOT_RUNNING: ExitCode.conflict,
  E_ENGINE_MISSING: ExitCode.engine,
  E_ENGINE_UNREACHABLE: ExitCode.engine,
  E_ENGINE_PERMISSION: ExitCode.engine,
  E_ENGINE_FAILED: ExitCode.engine,
  E_ISOLATION_UNAVAILABLE: ExitCode.engine,
  E_LIMITS_UNENFORCED: ExitCode.config,
  E_IMAGE_BUILD: ExitCode.engine,
  E_IMAGE_MISSING: ExitCode.engine,
  E_TEMPLATE_UNKNOWN: ExitCode.usage,
  E_NOT_GIT_REPO: ExitCode.git,
  E_GIT_HEAD: ExitCode.git,
  E_GIT_REF: ExitCode.git,
  E_GIT_FAILED: ExitCode.git,
  E_SYNC_FAILED: ExitCode.git,
  E_DIRTY_CHECKOUT: ExitCode.conflict,
  E_MERGE_CONFLICT: ExitCode.conflict,
  E_BRANCH_MOVED: ExitCode.conflict,
  E_CONFIRM: ExitCode.usage,
  E_INTERRUPTED: ExitCode.interrupted,
  E_TERMINATED: ExitCode.terminated,
  E_INTERNAL: ExitCode.internal,
};

export interface MoatErrorOptions {
  hint?: string;
  cause?: unknown;
  /** Extra machine-readable facts for `--json` (never secret values). */
  details?: Record<string, unknown>;
}

export class MoatError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  /** Marker that survives realms and duplicate module copies, unlike `instanceof`. */
  readonly isMoatError = true;

  constructor(code: ErrorCode, message: string, options: MoatErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MoatError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }

  get exitCode(): ExitCodeValue {
    return exitFor[this.code];
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, exitCode: this.exitCode, ...(this.details ? { details: this.details } : {}) };
  }
}

export function isMoatError(value: unknown): value is MoatError {
  return typeof value === 'object' && value !== null && (value as { isMoatError?: unknown }).isMoatError === true;
}
