import { runProcess } from './run-process.js';
import { MoatError } from '../errors.js';

/**
 * Runs host-side git. Always argv arrays (never a shell string), always in a repository moat
 * trusts (the user's own, or a workspace before the sandbox has touched it), and always with
 * the hardening below as defence in depth: a hook, fsmonitor or pager must never run because
 * moat ran git.
 */
export const HARDENING = [
  '-c',
  'core.hooksPath=/dev/null',
  '-c',
  'core.fsmonitor=false',
  '-c',
  'core.pager=cat',
  '-c',
  'diff.external=',
  '-c',
  'protocol.ext.allow=never',
  '-c',
  'transfer.fsckObjects=true',
];

/** Variables that would point git at another repository or config than the one we name. */
const INHERITED_GIT_VARS =
  /^GIT_(DIR|WORK_TREE|INDEX_FILE|OBJECT_DIRECTORY|ALTERNATE_OBJECT_DIRECTORIES|NAMESPACE|COMMON_DIR|CEILING_DIRECTORIES|CONFIG.*|EXTERNAL_DIFF|PAGER|EDITOR|SSH.*|ASKPASS|EXEC_PATH|TRACE.*)$/;

export function gitEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && !INHERITED_GIT_VARS.test(key)) out[key] = value;
  }
  out.GIT_TERMINAL_PROMPT = '0';
  out.GIT_OPTIONAL_LOCKS = '0';
  out.LC_ALL = 'C';
  return out;
}

export interface GitResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface GitOptions {
  cwd: string;
  /** Exit codes that are answers, not failures (e.g. 1 from `diff --quiet`). */
  allowExit?: number[];
  input?: string;
  env?: Record<string, string>;
  /** Keep trailing whitespace (diff output). */
  raw?: boolean;
}

export async function git(args: string[], options: GitOptions): Promise<GitResult> {
  const result = await runProcess('git', [...HARDENING, ...args], { cwd: options.cwd, env: { ...gitEnv(), ...(options.env ?? {}) }, input: options.input });
  if (result.exitCode === undefined) {
    throw new MoatError('E_GIT_FAILED', `could not run git: ${result.error?.message ?? 'unknown error'}`, {
      hint: 'install git (apt-get install git)',
      cause: result.error,
    });
  }
  const stdout = options.raw ? result.stdout : result.stdout.replace(/\n$/, '');
  const stderr = result.stderr.replace(/\n$/, '');
  const exitCode = result.exitCode;
  if (exitCode !== 0 && !(options.allowExit ?? []).includes(exitCode)) {
    const firstLine = (stderr || stdout).split('\n').find((line) => line.trim()) ?? `exit ${exitCode}`;
    throw new MoatError('E_GIT_FAILED', `git ${args[0]} failed: ${firstLine.replace(/^(fatal|error): /, '')}`, {
      hint: 'run the same git command yourself to see the whole message',
      details: { args, exitCode, stderr: stderr.slice(0, 4000) },
    });
  }
  return { stdout, stderr, exitCode };
}

/** Full object ids only: refs chosen by a sandbox never reach a host git command line. */
export const OBJECT_ID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

export function assertObjectId(value: string, what: string): string {
  if (!OBJECT_ID.test(value)) throw new MoatError('E_INTERNAL', `${what} is not an object id: ${JSON.stringify(value.slice(0, 80))}`);
  return value;
}
