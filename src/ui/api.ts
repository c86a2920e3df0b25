import { StringDecoder } from 'node:string_decoder';
import { PassThrough, Writable } from 'node:stream';
import { ExitCode, isMoatError, MoatError } from '../errors.js';
import { Moat } from '../moat.js';
import type { MoatContext } from '../service/context.js';
import { answerPending, listPending, PENDING_ANSWERS, type PendingAnswer } from '../service/pending.js';
import type { TaskRecord } from '../domain/task.js';
import { FLAG_TEXT } from '../domain/review-flags.js';
import type { MergeStrategy } from '../service/review.js';

/**
 * What the dashboard's page asks, answered by the service layer: a translation of JSON to calls,
 * no decisions of its own. A task is named by its repository key and name (a dashboard shows every
 * repository of the home); its operations run through a Moat rooted in that task's repository,
 * so they refuse exactly what the CLI refuses there.
 */
export class DashboardApi {
  private readonly moats = new Map<string, Moat>();

  constructor(
    readonly ctx: MoatContext,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** The task's record, or a not-found error: the names come from the page, so they are looked up, never built into paths unchecked. */
  async record(repoKey: unknown, task: unknown): Promise<TaskRecord> {
    if (typeof repoKey !== 'string' || typeof task !== 'string' || !/^[A-Za-z0-9._-]{1,200}$/.test(repoKey) || !/^[A-Za-z0-9._-]{1,200}$/.test(task)) {
      throw new MoatError('E_USAGE', 'a task is named by repoKey and task', { hint: 'reload the page' });
    }
    const record = await this.ctx.store.get(repoKey, task);
    if (!record || record.state === 'pooled')
      throw new MoatError('E_TASK_NOT_FOUND', `no task named ${JSON.stringify(task)}`, { hint: 'it may have been removed; reload the page' });
    return record;
  }

  private moatFor(record: TaskRecord): Moat {
    let moat = this.moats.get(record.repoPath);
    if (!moat) {
      moat = new Moat({ cwd: record.repoPath, env: this.env, paths: this.ctx.paths });
      this.moats.set(record.repoPath, moat);
    }
    return moat;
  }

  async tasks() {
    const records = await this.ctx.store.listAll();
    const keyOf = new Map(records.map((r) => [`${r.repoPath}\0${r.name}`, r.repoKey]));
    const home = new Moat({ cwd: this.ctx.cwd, env: this.env, paths: this.ctx.paths });
    const summaries = (await home.ls({ all: true })).filter((t) => !t.spare);
    return summaries.map((t) => ({ ...t, repoKey: keyOf.get(`${t.repoPath}\0${t.name}`) ?? '' }));
  }

  async stats() {
    const records = (await this.ctx.store.listAll()).filter((r) => r.containerId);
    const rows = await Promise.all(
      records.map(async (record) => {
        const [stats] = await this.moatFor(record)
          .stats(record.name)
          .catch(() => []);
        return stats ? { repoKey: record.repoKey, ...stats } : undefined;
      }),
    );
    return rows.filter((r) => r !== undefined);
  }

  pending() {
    return listPending(this.ctx);
  }

  async answer(body: Record<string, unknown>) {
    const record = await this.record(body.repoKey, body.task);
    if (typeof body.answer !== 'string' || !PENDING_ANSWERS.includes(body.answer as PendingAnswer))
      throw new MoatError('E_USAGE', 'answer must be once, task, always or deny', { hint: 'reload the page' });
    if (typeof body.id !== 'string') throw new MoatError('E_USAGE', 'which request?', { hint: 'reload the page' });
    return answerPending(this.ctx, { repoKey: record.repoKey, task: record.name, id: body.id }, body.answer as PendingAnswer, 'ui');
  }

  async act(body: Record<string, unknown>) {
    const record = await this.record(body.repoKey, body.task);
    const moat = this.moatFor(record);
    if (body.action === 'down') return moat.down(record.name);
    if (body.action === 'reset') return moat.reset(record.name);
    if (body.action === 'rm') return moat.rm(record.name, { force: body.force === true });
    throw new MoatError('E_USAGE', 'action must be down, reset or rm', { hint: 'reload the page' });
  }

  async review(repoKey: unknown, task: unknown) {
    const record = await this.record(repoKey, task);
    const diff = await this.moatFor(record).diff(record.name, { patch: true });
    // Flagged files first; each flag with the sentence the CLI prints.
    const files = [...diff.files]
      .sort((a, b) => Number(b.flags.length > 0) - Number(a.flags.length > 0))
      .map((f) => ({ ...f, reasons: f.flags.map((flag) => FLAG_TEXT[flag]) }));
    const patch = diff.patch && diff.patch.length > 2_000_000 ? `${diff.patch.slice(0, 2_000_000)}\n… (cut at 2 MB; see moat diff)` : diff.patch;
    return {
      task: record.name,
      repoKey: record.repoKey,
      repoPath: record.repoPath,
      branch: diff.branch,
      commits: diff.commits,
      uncommitted: diff.uncommitted,
      files,
      patch,
      warning: diff.sync.warning,
    };
  }

  async merge(body: Record<string, unknown>) {
    const record = await this.record(body.repoKey, body.task);
    const strategy = body.strategy === 'squash' ? 'squash' : body.strategy === 'merge' || body.strategy === undefined ? 'merge' : undefined;
    if (!strategy) throw new MoatError('E_USAGE', 'strategy must be merge or squash', { hint: 'reload the page' });
    return this.moatFor(record).merge(record.name, { strategy: strategy as MergeStrategy, yes: body.yes === true });
  }

  /**
   * The container's output as it comes: its last lines, then what it writes, until the container
   * stops or `signal` aborts (the page left). Text as the engine gives it; the page shows it as text.
   */
  async followLogs(repoKey: unknown, task: unknown, onText: (text: string) => void, signal: AbortSignal): Promise<void> {
    const record = await this.record(repoKey, task);
    const decoder = new StringDecoder('utf8');
    const out = new Writable({
      write(chunk: Buffer, _encoding, done) {
        const text = decoder.write(chunk);
        if (text) onText(text);
        done();
      },
    });
    await this.moatFor(record).logs(record.name, { follow: true, tail: 500, signal }, out, out);
  }

  /** The container's last lines, once. */
  async logs(repoKey: unknown, task: unknown): Promise<string> {
    const record = await this.record(repoKey, task);
    const out = new PassThrough();
    let text = '';
    out.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    await this.moatFor(record).logs(record.name, { follow: false, tail: 500 }, out, out);
    return text.length > 1_000_000 ? text.slice(-1_000_000) : text;
  }
}

/** An error as the page shows it, and the HTTP status that goes with it. */
export function errorAnswer(error: unknown): { status: number; body: { error: Record<string, unknown> } } {
  if (!isMoatError(error)) return { status: 500, body: { error: { code: 'E_INTERNAL', message: (error as Error).message ?? String(error) } } };
  const status =
    error.exitCode === ExitCode.notFound
      ? 404
      : error.exitCode === ExitCode.conflict || error.code === 'E_CONFIRM'
        ? 409
        : error.exitCode === ExitCode.usage
          ? 400
          : 500;
  return { status, body: { error: error.toJSON() } };
}
