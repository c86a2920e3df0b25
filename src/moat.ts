/**
 * The library's entry object: everything the CLI can do, a program can do through these methods.
 */
import type { ExecIO, LogOptions } from './engine/engine.js';
import { MoatContext, type MoatOptions } from './service/context.js';
import { doctor } from './service/doctor.js';
import { execInTask, type ExecOptions } from './service/exec.js';
import { gc } from './service/gc.js';
import { down, remove, reset, run, type RunOptions } from './service/lifecycle.js';
import { listTasks, taskLogs } from './service/list.js';
import { applyTask, diffTask, mergeTask, type MergeStrategy } from './service/review.js';
import { syncTask } from './service/sync.js';
import { up, type UpOptions } from './service/up.js';
import type { Writable } from 'node:stream';
import { join } from 'node:path';
import { changeEgress, egressLog, egressLogSince } from './service/egress.js';
import { closePort, openPort } from './service/ports.js';
import { taskStats } from './service/stats.js';
import { newTemplate, runAgent, templates } from './service/agent.js';
import { approveRepo } from './service/approve.js';
import { namedTemplate } from './image/template-image.js';
import { pushTask } from './service/push.js';
import { answerPending, listPending, type PendingAnswer, type PendingScope } from './service/pending.js';
import { egressDir } from './gateway/task-egress.js';
import { AUDIT_FILE, type AuditCursor } from './gateway/audit.js';

export class Moat {
  readonly context: MoatContext;

  constructor(options: MoatOptions = {}) {
    this.context = new MoatContext(options);
  }

  up(options?: UpOptions) {
    return up(this.context, options);
  }
  exec(task: string, cmd: string[], io: ExecIO, options?: ExecOptions) {
    return execInTask(this.context, task, cmd, io, options);
  }
  run(cmd: string[], io: ExecIO, options?: RunOptions) {
    return run(this.context, cmd, io, options);
  }
  ls(options?: { all?: boolean }) {
    return listTasks(this.context, options);
  }
  logs(task: string, options: LogOptions, out: Writable, err: Writable) {
    return taskLogs(this.context, task, options, out, err);
  }
  down(task: string) {
    return down(this.context, task);
  }
  reset(task: string) {
    return reset(this.context, task);
  }
  rm(task: string, options?: { force?: boolean }) {
    return remove(this.context, task, options);
  }
  gc(options?: { all?: boolean }) {
    return gc(this.context, options);
  }
  doctor() {
    return doctor(this.context);
  }
  async sync(task: string) {
    const repo = await this.context.repo();
    return syncTask(this.context, repo, await this.context.store.require(repo.key, task));
  }
  diff(task: string, options?: { patch?: boolean; stat?: boolean }) {
    return diffTask(this.context, task, options);
  }
  merge(task: string, options?: { strategy?: MergeStrategy; yes?: boolean }) {
    return mergeTask(this.context, task, options);
  }
  changeEgress(task: string, change: { allow?: string[]; deny?: string[] }) {
    return changeEgress(this.context, task, change);
  }
  stats(task?: string) {
    return taskStats(this.context, task);
  }
  /** Pushes the task branch with the user's own git credentials: the sandbox never needs any. */
  push(task: string, options?: { remote?: string }) {
    return pushTask(this.context, task, options);
  }
  /** Approves the hosts this repository's moat.yaml requests (stored in the user's config). */
  approve() {
    return approveRepo(this.context);
  }
  /** What `moat shell` runs: the template's interactive command (the agent's UI), else a login shell. */
  async interactiveCommand(task: string): Promise<string[]> {
    const repo = await this.context.repo();
    const record = await this.context.store.require(repo.key, task);
    const config = await this.context.effectiveConfig(repo);
    const spec = await namedTemplate(record.template, config.templateDirs);
    return spec.interactive ?? ['bash', '-l'];
  }
  templates() {
    return templates(this.context);
  }
  newTemplate(template: string) {
    return newTemplate(this.context, template);
  }
  agent(prompt: string, io: ExecIO, options?: { task?: string; template?: string }) {
    return runAgent(this.context, prompt, io, options);
  }
  egress(task: string) {
    return egressLog(this.context, task);
  }
  /** Makes the sandbox's 127.0.0.1:port reachable on the host (loopback unless `bind` says otherwise), inbound only. */
  openPort(task: string, port: number, options?: { hostPort?: number; bind?: string }) {
    return openPort(this.context, task, port, options);
  }
  closePort(task: string, port: number) {
    return closePort(this.context, task, port);
  }
  /** The egress records written since `cursor` (all that are kept without one), and the next cursor. */
  egressSince(task: string, cursor?: AuditCursor) {
    return egressLogSince(this.context, task, cursor);
  }
  egressFile(repoKey: string, task: string) {
    return join(egressDir(this.context.store.taskDir(repoKey, task)), AUDIT_FILE);
  }
  /** Egress requests held for a human's answer (egress.ask); by default those of the whole home. */
  pending(scope?: PendingScope) {
    return listPending(this.context, scope);
  }
  /** Answers the held requests of a task of this repository for `host` (a human's act: never wire this to an agent). */
  async answer(task: string, host: string, answer: PendingAnswer, options: { port?: number; by?: string } = {}) {
    const repo = await this.context.repo();
    return answerPending(
      this.context,
      { repoKey: repo.key, task, host, ...(options.port !== undefined ? { port: options.port } : {}) },
      answer,
      options.by ?? 'cli',
    );
  }
  apply(task: string, options?: { yes?: boolean }) {
    return applyTask(this.context, task, options);
  }
}
