import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { egressDir } from './task-egress.js';

/**
 * Pending egress requests (the file queue; service/pending.ts is its API): the one queue between a gateway that holds a connection to a host the
 * task's policy neither allows nor denies (egress.ask: the user's config or --ask) and the human who
 * answers it (moat ui, `moat egress --pending`, `moat allow TASK HOST --once`); and the standing
 * requests an MCP client's request_host puts in (nothing held, removed when answered or expired).
 *
 * On disk, in the task's egress folder (never mounted into the sandbox):
 *   pending/<id>.request.json   written by the gateway (temp file + rename)
 *   pending/<id>.answer.json    written by whoever answers first (exclusive create: one answer wins)
 * The gateway polls for the answer; at its deadline it writes a "deny (no answer)" answer itself
 * with the same exclusive create, so a human's answer and the timeout cannot both count. The
 * gateway removes both files when it is done. Everything in a request comes from the sandbox
 * (host, method): readers escape it.
 */

/** allow once: this connection only; task: the task's allowlist; always: the user's config and the task's; deny: refuse it. */
export type PendingAnswer = 'once' | 'task' | 'always' | 'deny';
export const PENDING_ANSWERS: readonly PendingAnswer[] = ['once', 'task', 'always', 'deny'];

export interface PendingRequest {
  id: string;
  task: string;
  repoKey: string;
  method: string;
  host: string;
  port: number;
  /** ISO times: when the connection arrived, and when it is refused without an answer. */
  time: string;
  expiresAt: string;
  /**
   * A standing request: an agent asked for the host ahead of a connection (moat mcp's
   * request_host), so nothing is held and "allow once" has nothing to let through. It stays until
   * a human answers it or it expires; the answer removes it.
   */
  standing?: true;
  /** Why the agent asks (standing requests; the agent wrote it: readers escape it). */
  reason?: string;
}

export interface PendingResolution {
  answer: PendingAnswer;
  /** Who answered ("ui", "cli", "mcp", "timeout"). */
  by: string;
  time: string;
}

const ID = /^[0-9a-f]{16}$/;

export function pendingDir(taskDir: string): string {
  return join(egressDir(taskDir), 'pending');
}

function requestPath(dir: string, id: string): string {
  return join(dir, `${id}.request.json`);
}

function answerPath(dir: string, id: string): string {
  return join(dir, `${id}.answer.json`);
}

/** The rule that admits a host as asked: the bare name for web ports (TLS checked), name:port otherwise. */
export function ruleFor(host: string, port: number): string {
  const name = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return port === 443 || port === 80 ? name : `${name}:${port}`;
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** First answer wins: the file is created exclusively, a second writer gets false. */
function writeAnswer(dir: string, id: string, resolution: PendingResolution): boolean {
  try {
    writeFileSync(answerPath(dir, id), JSON.stringify(resolution), { flag: 'wx', mode: 0o600 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * Gateway side: puts a request in the queue and waits for its answer, at most `timeoutMs`; then
 * it is a denial by "timeout". The files are gone when this resolves.
 */
export async function holdForAnswer(
  taskDir: string,
  request: Omit<PendingRequest, 'id' | 'time' | 'expiresAt'>,
  timeoutMs: number,
  options: { pollMs?: number; now?: () => number } = {},
): Promise<PendingResolution> {
  const now = options.now ?? Date.now;
  const dir = pendingDir(taskDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const id = randomBytes(8).toString('hex');
  const started = now();
  const full: PendingRequest = { id, ...request, time: new Date(started).toISOString(), expiresAt: new Date(started + timeoutMs).toISOString() };
  const file = requestPath(dir, id);
  writeFileSync(`${file}.tmp`, JSON.stringify(full), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
  try {
    for (;;) {
      const answer = readJson<PendingResolution>(answerPath(dir, id));
      if (answer && PENDING_ANSWERS.includes(answer.answer)) return answer;
      if (now() - started >= timeoutMs) {
        const timeout: PendingResolution = { answer: 'deny', by: 'timeout', time: new Date(now()).toISOString() };
        // A human who answered in the last instant wins; their answer is read back.
        if (writeAnswer(dir, id, timeout)) return timeout;
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 150));
    }
  } finally {
    rmSync(file, { force: true });
    rmSync(answerPath(dir, id), { force: true });
  }
}

/** How long a standing request waits for an answer, and how many of a task's may wait at once. */
export const STANDING_SECONDS = 3600;
export const MAX_STANDING = 16;

/**
 * Puts a standing request in the task's queue (an agent asking for a host ahead of a connection):
 * nothing waits on it and nothing is granted by it. One request per host and port: asking again
 * returns the one that waits. At most MAX_STANDING wait at once; more are refused (undefined).
 */
export function recordStandingRequest(
  taskDir: string,
  request: Omit<PendingRequest, 'id' | 'time' | 'expiresAt' | 'standing'>,
  now: () => number = Date.now,
): { request: PendingRequest; existing: boolean } | undefined {
  const waiting = pendingOfTask(taskDir, now).filter((r) => r.standing);
  const same = waiting.find((r) => r.host === request.host && r.port === request.port);
  if (same) return { request: same, existing: true };
  if (waiting.length >= MAX_STANDING) return undefined;
  const dir = pendingDir(taskDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const id = randomBytes(8).toString('hex');
  const started = now();
  const full: PendingRequest = {
    id,
    ...request,
    time: new Date(started).toISOString(),
    expiresAt: new Date(started + STANDING_SECONDS * 1000).toISOString(),
    standing: true,
  };
  const file = requestPath(dir, id);
  writeFileSync(`${file}.tmp`, JSON.stringify(full), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
  return { request: full, existing: false };
}

/** Removes a standing request once answered (a held one is removed by the gateway that holds it). */
export function settleStanding(taskDir: string, id: string): void {
  if (!ID.test(id)) return;
  const dir = pendingDir(taskDir);
  rmSync(requestPath(dir, id), { force: true });
  rmSync(answerPath(dir, id), { force: true });
}

/** The requests waiting in one task's queue, oldest first (unanswered ones only; expired standing ones are removed). */
export function pendingOfTask(taskDir: string, now: () => number = Date.now): PendingRequest[] {
  const dir = pendingDir(taskDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const requests: PendingRequest[] = [];
  for (const name of names) {
    const id = name.slice(0, -'.request.json'.length);
    if (!name.endsWith('.request.json') || !ID.test(id)) continue;
    const request = readJson<PendingRequest>(join(dir, name));
    if (!request || request.id !== id) continue;
    const answered = names.includes(`${id}.answer.json`);
    if (request.standing === true && (answered || Date.parse(request.expiresAt) <= now())) {
      settleStanding(taskDir, id);
      continue;
    }
    if (!answered) requests.push(request);
  }
  return requests.sort((a, b) => a.time.localeCompare(b.time));
}

/**
 * Records an answer to one waiting request. Returns false when the request is no longer waiting
 * (answered by someone else, timed out, or never existed). The policy change an answer implies
 * ("task", "always") is the caller's to make first (answerPending in the service does), so that
 * the connection released by this answer already sees it.
 */
export function recordAnswer(taskDir: string, id: string, answer: PendingAnswer, by: string): boolean {
  if (!ID.test(id)) return false;
  const dir = pendingDir(taskDir);
  if (readJson<PendingRequest>(requestPath(dir, id)) === undefined) return false;
  return writeAnswer(dir, id, { answer, by, time: new Date().toISOString() });
}
