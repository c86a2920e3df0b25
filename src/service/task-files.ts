import { PassThrough, Readable } from 'node:stream';
import { WORKSPACE_DIR } from '../domain/sandbox-spec.js';
import { workspacePath } from '../domain/workspace-path.js';
import type { TaskRecord } from '../domain/task.js';
import { MoatError } from '../errors.js';
import type { ContainerEngine } from '../engine/engine.js';
import type { MoatContext } from './context.js';

/**
 * Files of a task's workspace, for clients that are not the agent inside (MCP): every operation
 * is a command in the task's container, as the sandbox user, so it sees exactly what the sandbox
 * sees and nothing of the host. A link in the workspace to /etc/passwd, ~/.ssh or another task's
 * workspace names the container's path (or nothing), never the host's; the host itself opens no
 * file of the workspace here. Paths are checked twice: as given (workspacePath), and inside the
 * sandbox after its links are resolved, so that an honest client stays in /workspace. A sandbox
 * racing these checks can only reach what it reaches by itself anyway.
 */

/** Most bytes one read returns (the tool says when a file was longer). */
export const MAX_READ_BYTES = 8 * 1024 * 1024;
/** Most bytes one write takes. */
export const MAX_WRITE_BYTES = 8 * 1024 * 1024;
/** Most entries one listing returns. */
export const MAX_LIST_ENTRIES = 5000;

// The scripts take their paths as arguments ("$1"), never spliced into their text. Their exit
// statuses: 3 missing, 4 a link leads out of the workspace, 5 the wrong kind of file, 6 refused.
const INSIDE = `case "$p" in ${WORKSPACE_DIR}|${WORKSPACE_DIR}/*) ;; *) printf '%s' "$p" >&2; exit 4;; esac`;
const READ = `p=$(realpath -e -- "$1" 2>/dev/null) || exit 3; ${INSIDE}; [ -f "$p" ] || exit 5; stat -c %s -- "$p" >&2; exec head -c "$2" -- "$p"`;
const LIST = `p=$(realpath -e -- "$1" 2>/dev/null) || exit 3; ${INSIDE}; [ -d "$p" ] || exit 5; cd -- "$p" || exit 5; find . -mindepth 1 -maxdepth "$2" -path ./.git -prune -o -printf '%y\\t%s\\t%P\\0' | head -z -n "$3"`;
const WRITE = `d=\${1%/*}; p=$(realpath -m -- "$d") || exit 3; ${INSIDE}; mkdir -p -- "$p" 2>/dev/null || exit 5; d=$p; p="$d/\${1##*/}"; if [ -L "$p" ]; then p=$(realpath -m -- "$p"); ${INSIDE}; fi; [ -d "$p" ] && exit 5; cat > "$p" || exit 5`;
const DELETE = `p=$(realpath -e -- "\${1%/*}" 2>/dev/null) || exit 3; ${INSIDE}; t="$p/\${1##*/}"; [ "$t" = ${WORKSPACE_DIR}/.git ] && exit 6; [ -e "$t" ] || [ -L "$t" ] || exit 3; if [ -d "$t" ] && [ ! -L "$t" ]; then [ "$2" = recursive ] || exit 5; rm -rf -- "$t" || exit 5; else rm -f -- "$t" || exit 5; fi`;

export interface FileEntry {
  path: string;
  type: 'file' | 'directory' | 'link' | 'other';
  bytes: number;
}

interface Sandbox {
  record: TaskRecord;
  engine: ContainerEngine;
  id: string;
  user: string;
}

/** The task's running container and the user its file operations run as (no engine call). */
export async function taskContainer(ctx: MoatContext, task: string): Promise<Omit<Sandbox, 'engine'>> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  if (!record.containerId)
    throw new MoatError('E_TASK_NOT_RUNNING', `task ${task} has no running container`, {
      hint: `start a fresh container over its workspace with \`moat reset ${task}\``,
    });
  return { record, id: record.containerId, user: `${record.user.uid}:${record.user.gid}` };
}

async function sandbox(ctx: MoatContext, task: string): Promise<Sandbox> {
  return { ...(await taskContainer(ctx, task)), engine: await ctx.engine() };
}

/** A failed file operation (statuses of the scripts above, and of mcp/file-server-script.ts) as a MoatError. */
export function failure(status: number, path: string, what: string, stderr: string): MoatError {
  const shown = JSON.stringify(path);
  switch (status) {
    case 3:
      return new MoatError('E_USAGE', `${shown} does not exist in the workspace`, { hint: 'list the workspace to see what is there' });
    case 4:
      return new MoatError('E_USAGE', `${shown} leads out of the workspace (a link to ${JSON.stringify(stderr.slice(0, 200))})`, {
        hint: `the file tools stay inside ${WORKSPACE_DIR}; links are followed only within it`,
      });
    case 5:
      return new MoatError('E_USAGE', `${shown} is not ${what}`, { hint: 'list the workspace to see what kind of file it is' });
    case 6:
      return new MoatError('E_USAGE', `${shown} is the task's own repository and is not deleted by the file tools`, {
        hint: 'a task that is in a bad state is reset (reset_task) or removed by the human',
      });
    case 7:
      return new MoatError('E_USAGE', `${shown} changed while it was being opened (a link or a folder on its way was swapped): nothing was done`, {
        hint: 'try again once nothing in the sandbox is moving it',
      });
    default:
      return new MoatError(
        'E_ENGINE_FAILED',
        `the sandbox could not access ${shown} (status ${status}): ${stderr.trim().split('\n')[0]?.slice(0, 200) ?? ''}`,
        { hint: 'check the task with `moat ls`; `moat reset` starts a fresh container' },
      );
  }
}

/** A file's bytes (up to `maxBytes`), its full size, and whether it was cut. */
export async function readTaskFile(
  ctx: MoatContext,
  task: string,
  path: string,
  maxBytes = MAX_READ_BYTES,
): Promise<{ path: string; content: Buffer; size: number; truncated: boolean }> {
  const inside = workspacePath(path);
  const limit = Math.max(0, Math.min(maxBytes, MAX_READ_BYTES));
  const box = await sandbox(ctx, task);
  const result = await box.engine.execCapture(
    box.id,
    { cmd: ['sh', '-c', READ, 'sh', inside, String(limit)], user: box.user, workdir: WORKSPACE_DIR },
    limit + 1,
  );
  if (result.exitCode !== 0) throw failure(result.exitCode, path, 'a regular file', result.stderr);
  const size = Number.parseInt(result.stderr.trim(), 10);
  return {
    path: inside,
    content: result.stdout,
    size: Number.isFinite(size) ? size : result.stdout.length,
    truncated: Number.isFinite(size) && size > result.stdout.length,
  };
}

/** Entries under a directory of the workspace (its .git not entered), up to `depth` levels. */
export async function listTaskFiles(
  ctx: MoatContext,
  task: string,
  path = '.',
  depth = 1,
  maxEntries = MAX_LIST_ENTRIES,
): Promise<{ path: string; entries: FileEntry[]; truncated: boolean }> {
  const inside = workspacePath(path);
  const box = await sandbox(ctx, task);
  const cmd = ['sh', '-c', LIST, 'sh', inside, String(Math.max(1, Math.min(depth, 20))), String(maxEntries + 1)];
  const result = await box.engine.execCapture(box.id, { cmd, user: box.user, workdir: WORKSPACE_DIR }, 64 * 1024 * 1024);
  if (result.exitCode !== 0) throw failure(result.exitCode, path, 'a directory', result.stderr);
  return { path: inside, ...parseListing(result.stdout, maxEntries) };
}

/** A listing as the sandbox printed it (type, size and path per NUL-ended record; mcp/file-server-script.ts prints the same), up to `maxEntries`. */
export function parseListing(listing: Buffer, maxEntries: number): { entries: FileEntry[]; truncated: boolean } {
  const records = listing
    .toString('utf8')
    .split('\0')
    .filter((r) => r !== '');
  const kinds: Record<string, FileEntry['type']> = { f: 'file', d: 'directory', l: 'link' };
  const entries = records.slice(0, maxEntries).map((record) => {
    const [type = '', bytes = '0', ...name] = record.split('\t');
    return { path: name.join('\t'), type: kinds[type] ?? 'other', bytes: Number(bytes) || 0 };
  });
  return { entries, truncated: records.length > maxEntries };
}

/** Writes a file (its folders made as needed), replacing what was there. */
export async function writeTaskFile(ctx: MoatContext, task: string, path: string, content: Buffer): Promise<{ path: string; bytes: number }> {
  const inside = workspacePath(path);
  if (inside === WORKSPACE_DIR) throw failure(5, path, 'a file', '');
  if (content.length > MAX_WRITE_BYTES)
    throw new MoatError('E_USAGE', `the content is ${content.length} bytes, more than the ${MAX_WRITE_BYTES} one write takes`, {
      hint: 'write large files in the sandbox itself (run a command that makes them)',
    });
  const box = await sandbox(ctx, task);
  const out = new PassThrough().resume();
  const errors = new PassThrough();
  let stderr = '';
  errors.on('data', (chunk: Buffer) => {
    if (stderr.length < 4096) stderr += chunk.toString('utf8');
  });
  const status = await box.engine.exec(
    box.id,
    { cmd: ['sh', '-c', WRITE, 'sh', inside], user: box.user, workdir: WORKSPACE_DIR },
    { stdin: Readable.from([content]), stdout: out, stderr: errors },
  );
  if (status !== 0) throw failure(status, path, 'a file that can be written', stderr);
  return { path: inside, bytes: content.length };
}

/**
 * Replaces `search` with `replace` in a UTF-8 file: exactly one occurrence, or every one with
 * `all`. The text is changed on the host as data (nothing of it runs), then written back.
 */
export async function editTaskFile(
  ctx: MoatContext,
  task: string,
  path: string,
  search: string,
  replace: string,
  options: { all?: boolean } = {},
  io: { read: typeof readTaskFile; write: typeof writeTaskFile } = { read: readTaskFile, write: writeTaskFile },
): Promise<{ path: string; replacements: number; bytes: number }> {
  if (search === '')
    throw new MoatError('E_USAGE', 'the text to search for is empty', { hint: 'give the exact text to replace, with enough context to be unique' });
  const file = await io.read(ctx, task, path);
  if (file.truncated)
    throw new MoatError('E_USAGE', `${JSON.stringify(path)} is larger than ${MAX_READ_BYTES} bytes`, { hint: 'edit it in the sandbox itself (run a command)' });
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(file.content);
  } catch {
    throw new MoatError('E_USAGE', `${JSON.stringify(path)} is not UTF-8 text`, { hint: 'write it whole instead (write_file with base64 content)' });
  }
  const count = text.split(search).length - 1;
  if (count === 0)
    throw new MoatError('E_USAGE', `the text to replace was not found in ${JSON.stringify(path)}`, {
      hint: 'read the file and copy the exact text, whitespace included',
    });
  if (count > 1 && !options.all)
    throw new MoatError('E_USAGE', `the text to replace occurs ${count} times in ${JSON.stringify(path)}`, {
      hint: 'include more surrounding text to make it unique, or replace all occurrences',
    });
  const edited = options.all ? text.split(search).join(replace) : text.replace(search, () => replace);
  const written = await io.write(ctx, task, path, Buffer.from(edited, 'utf8'));
  return { path: written.path, replacements: options.all ? count : 1, bytes: written.bytes };
}

/** Deletes a file or a link (the link itself), or a directory with `recursive`. */
export async function deleteTaskFile(ctx: MoatContext, task: string, path: string, options: { recursive?: boolean } = {}): Promise<{ path: string }> {
  const inside = workspacePath(path);
  if (inside === WORKSPACE_DIR) throw failure(6, path, '', '');
  const box = await sandbox(ctx, task);
  const result = await box.engine.execCapture(
    box.id,
    { cmd: ['sh', '-c', DELETE, 'sh', inside, options.recursive ? 'recursive' : 'single'], user: box.user, workdir: WORKSPACE_DIR },
    4096,
  );
  if (result.exitCode !== 0)
    throw failure(result.exitCode, path, options.recursive ? 'something that can be deleted' : 'a file (a directory needs recursive)', result.stderr);
  return { path: inside };
}
