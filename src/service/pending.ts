import { MoatError } from '../errors.js';
import type { TaskRecord } from '../domain/task.js';
import { allowInUserConfig } from '../config/update-user-config.js';
import { pendingOfTask, recordAnswer, ruleFor, PENDING_ANSWERS, type PendingAnswer, type PendingRequest } from '../gateway/pending-queue.js';
import type { MoatContext } from './context.js';
import { changeEgressOf } from './egress.js';

export { PENDING_ANSWERS, type PendingAnswer, type PendingRequest } from '../gateway/pending-queue.js';

/**
 * The API of pending egress requests (gateway/pending-queue.ts is the queue on disk), for every
 * door a human answers through: the CLI, moat ui, an MCP server's request tool. Answering is a
 * human's act: whatever calls `answerPending` must have a human's click or command behind it,
 * never an agent's say (an MCP client is an agent: its tool may *ask*, not answer).
 */

/** Which tasks to look at: one task of one repository, a repository, or the whole home. */
export interface PendingScope {
  repoKey?: string;
  task?: string;
}

/** The requests waiting now, oldest first. */
export async function listPending(ctx: MoatContext, scope: PendingScope = {}): Promise<PendingRequest[]> {
  const records = await tasksIn(ctx, scope);
  return records.flatMap((record) => pendingOfTask(ctx.store.taskDir(record.repoKey, record.name))).sort((a, b) => a.time.localeCompare(b.time));
}

export interface PendingAnswered {
  answer: PendingAnswer;
  /** The requests this answer released (all those of the task waiting for the same host and port). */
  answered: PendingRequest[];
  /** The rule added: to the task's allowlist ("task", "always") and to the user's config ("always"). */
  rule?: string;
  configFile?: string;
}

/**
 * Answers the requests of a task that wait for `host` (and `port`, if given), or the one request
 * `id`. A policy change comes first ("task": the task's allowlist; "always": the user's config
 * too, written atomically under a lock), then the answer releases the held connections.
 */
export async function answerPending(
  ctx: MoatContext,
  target: { repoKey: string; task: string; id?: string; host?: string; port?: number },
  answer: PendingAnswer,
  by: string,
): Promise<PendingAnswered> {
  if (!PENDING_ANSWERS.includes(answer))
    throw new MoatError('E_USAGE', `unknown answer ${JSON.stringify(answer)}`, { hint: `answer with one of ${PENDING_ANSWERS.join(', ')}` });
  const record = await ctx.store.get(target.repoKey, target.task);
  if (!record || record.state === 'pooled')
    throw new MoatError('E_TASK_NOT_FOUND', `no task named ${JSON.stringify(target.task)}`, { hint: 'list tasks with `moat ls -a`' });
  const taskDir = ctx.store.taskDir(record.repoKey, record.name);
  const host = target.host?.toLowerCase().replace(/\.$/, '');
  const waiting = pendingOfTask(taskDir).filter((r) =>
    target.id !== undefined ? r.id === target.id : r.host.toLowerCase().replace(/\.$/, '') === host && (target.port === undefined || r.port === target.port),
  );
  if (waiting.length === 0) {
    throw new MoatError(
      'E_TASK_NOT_FOUND',
      `no request of task ${record.name} is waiting${target.id ? ` (${target.id})` : host ? ` for ${JSON.stringify(host)}` : ''}`,
      {
        hint: 'it was answered or timed out; see `moat egress --pending`',
      },
    );
  }
  let rule: string | undefined;
  let configFile: string | undefined;
  if (answer === 'task' || answer === 'always') {
    // One rule per distinct host:port asked; the requests came from the sandbox, so each is checked as a rule.
    const rules = [...new Set(waiting.map((r) => ruleFor(r.host, r.port)))];
    rule = rules.join(', ');
    if (answer === 'always') {
      configFile = ctx.paths.userConfig;
      await allowInUserConfig(configFile, rules);
    }
    await changeEgressOf(ctx, record, { allow: rules });
  }
  const answered = waiting.filter((r) => recordAnswer(taskDir, r.id, answer, by));
  if (answered.length === 0)
    throw new MoatError('E_TASK_NOT_FOUND', `the request of task ${record.name} is no longer waiting`, {
      hint: 'it timed out or was answered elsewhere; see `moat egress --pending`',
    });
  return { answer, answered, ...(rule ? { rule } : {}), ...(configFile ? { configFile } : {}) };
}

async function tasksIn(ctx: MoatContext, scope: PendingScope): Promise<TaskRecord[]> {
  if (scope.repoKey && scope.task) {
    const record = await ctx.store.get(scope.repoKey, scope.task);
    return record ? [record] : [];
  }
  if (scope.repoKey) return ctx.store.list(scope.repoKey);
  return ctx.store.listAll();
}
