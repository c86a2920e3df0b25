/**
 * moat's library API. The CLI (src/cli) is a thin layer over these calls; everything it can do,
 * a program can do by creating a {@link Moat} and calling its methods.
 */
export { Moat } from './moat.js';
export { MoatError, isMoatError, ExitCode, type ErrorCode } from './errors.js';
export type { MoatOptions } from './service/context.js';
export type { UpOptions } from './service/up.js';
export type { RunOptions, RunResult } from './service/lifecycle.js';
export type { ExecOptions, ExecResult } from './service/exec.js';
export type { TaskRecord, TaskState } from './domain/task.js';
export type { Limits } from './domain/limits.js';
export type { ContainerEngine, ExecIO } from './engine/engine.js';
export { DockerEngine } from './engine/docker-engine.js';
export { findEngine } from './engine/find-engine.js';
export { configSchema, type MoatConfig } from './config/schema.js';
export { configJsonSchema } from './config/json-schema.js';
export { loadConfigFile } from './config/load.js';
export { parseConfig } from './config/parse.js';
export { effectiveConfig } from './config/effective.js';
export { sandboxSpec, type SandboxSpec } from './domain/sandbox-spec.js';
export { LABEL } from './domain/labels.js';
export { MOAT_VERSION } from './version.js';
