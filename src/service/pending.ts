import { MoatError } from '../errors.js';
import type { TaskRecord } from '../domain/task.js';
import { allowInUserConfig } from '../config/update-user-config.js';
import {
  pendingOfTask,
  recordAnswer,
  recordStandingRequest,
  ruleFor,
  settleStanding,
  MAX_STANDING,
  PENDING_ANSWERS,
  type PendingAnswer,
  type PendingRequest,
} from '../gateway/pending-queue.js';
import type { MoatContext } from './context.js';
import { changeEgressOf } from './egress.js';
import { readTaskEgress } from '../gateway/task-egress.js';

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
  return pendingOfTasks(ctx, await tasksIn(ctx, scope));
}

/** The requests waiting now in these tasks' queues, oldest first (for a reader that keeps its own list of tasks). */
export function pendingOfTasks(ctx: MoatContext, records: Array<Pick<TaskRecord, 'repoKey' | 'name'>>): PendingRequest[] {
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
  let waiting = pendingOfTask(taskDir).filter((r) =>
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
  // A standing request (moat mcp's request_host) holds no connection: "once" has nothing to let through.
  if (answer === 'once' && waiting.every((r) => r.standing)) {
    throw new MoatError(
      'E_USAGE',
      `the request of task ${record.name} for ${waiting[0]!.host} came from an agent ahead of any connection: "once" has nothing to let through`,
      {
        hint: `allow it for the task (moat allow ${record.name} ${waiting[0]!.host}) or refuse it (moat deny ${record.name} ${waiting[0]!.host} --pending)`,
      },
    );
  }
  if (answer === 'once') waiting = waiting.filter((r) => !r.standing);
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
  for (const r of answered) if (r.standing) settleStanding(taskDir, r.id);
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

/** Hosts an agent may ask for: DNS names (no IP literals, wildcards, ports or odd spellings). */
const HOST_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Control, format (bidi, zero-width) and line/paragraph separators: refused in an agent's reason. */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
export const MAX_REASON = 500;

export interface HostRequest {
  repoKey: string;
  task: string;
  host: string;
  port: number;
  reason?: string;
}

export interface HostRequested {
  /** "queued": waits for a human now; "waiting": the same request already waited; "allowed": the task's policy already admits it. */
  status: 'queued' | 'waiting' | 'allowed';
  request?: PendingRequest;
  rule: string;
}

/**
 * An agent asks for a host (moat mcp's request_host): a standing request in the task's queue for a
 * human to answer. It grants nothing and answers nothing; it is refused for a task without an
 * allowlist network (a network is the human's to give), for a host the task denies, and for
 * strings that are not plain host names or printable reasons.
 */
export async function requestHost(ctx: MoatContext, request: HostRequest): Promise<HostRequested> {
  const host = request.host.toLowerCase().replace(/\.$/, '');
  if (!HOST_NAME.test(host)) {
    throw new MoatError('E_USAGE', `${JSON.stringify(request.host.slice(0, 100))} is not a host name`, {
      hint: 'ask for one DNS name (e.g. registry.npmjs.org): no IP address, wildcard, port or control character',
    });
  }
  if (!Number.isInteger(request.port) || request.port < 1 || request.port > 65535)
    throw new MoatError('E_USAGE', `port ${request.port} is not a TCP port`, { hint: 'a port from 1 to 65535 (default 443)' });
  if (request.reason !== undefined && (request.reason.length > MAX_REASON || UNPRINTABLE.test(request.reason))) {
    throw new MoatError('E_USAGE', 'the reason must be printable text of at most 500 characters', {
      hint: 'one plain sentence: no control, bidi or zero-width characters',
    });
  }
  const record = await ctx.store.get(request.repoKey, request.task);
  if (!record || record.state === 'pooled')
    throw new MoatError('E_TASK_NOT_FOUND', `no task named ${JSON.stringify(request.task)}`, { hint: 'list tasks with list_tasks' });
  if (record.network !== 'allowlist') {
    throw new MoatError(
      'E_CONFIG_WIDENS',
      `refused: task ${record.name} has network ${record.network}; only a task with an allowlist network can ask for a host`,
      {
        hint:
          record.network === 'none'
            ? `only the human can give a task a network: moat allow ${record.name} HOST, then moat reset ${record.name}`
            : 'an open network has nothing to ask for',
      },
    );
  }
  const rule = ruleFor(host, request.port);
  const taskDir = ctx.store.taskDir(record.repoKey, record.name);
  const policy = (await readTaskEgress(taskDir)) ?? record.egress;
  if (policy?.deny.includes(rule) || policy?.deny.includes(host)) {
    throw new MoatError('E_CONFIG_WIDENS', `refused: task ${record.name} denies ${host}`, {
      hint: `only the human lifts a deny: moat allow ${record.name} ${host}`,
    });
  }
  if (policy?.allow.includes(rule)) return { status: 'allowed', rule };
  const queued = recordStandingRequest(taskDir, {
    task: record.name,
    repoKey: record.repoKey,
    method: 'MCP',
    host,
    port: request.port,
    ...(request.reason ? { reason: request.reason } : {}),
  });
  if (!queued) {
    throw new MoatError('E_USAGE', `task ${record.name} has ${MAX_STANDING} host requests waiting already`, {
      hint: 'wait for the human to answer them (moat egress --pending)',
    });
  }
  return { status: queued.existing ? 'waiting' : 'queued', request: queued.request, rule };
}
