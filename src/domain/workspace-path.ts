import { MoatError } from '../errors.js';
import { WORKSPACE_DIR } from './sandbox-spec.js';

/** Longest path a file tool takes: Linux's PATH_MAX. */
export const MAX_WORKSPACE_PATH = 4096;

/**
 * A path an agent or an MCP client gave for a file of a task, as a path inside the sandbox's
 * workspace: relative to it (or absolute under it), without `..` and without characters that
 * could hide what the path is (controls, bidi, NUL). This is the first check; the second runs
 * in the sandbox itself, on the path with its links resolved (task-files.ts), because only there
 * do the links mean what the sandbox made them mean.
 */
export function workspacePath(input: string): string {
  const refuse = (why: string) =>
    new MoatError('E_USAGE', `path ${JSON.stringify(input.length > 200 ? `${input.slice(0, 200)}…` : input)} ${why}`, {
      hint: `give a path inside the task's workspace, relative to it (e.g. src/index.ts); the sandbox sees its workspace as ${WORKSPACE_DIR}`,
    });
  if (input.length === 0) throw refuse('is empty');
  if (input.length > MAX_WORKSPACE_PATH) throw refuse(`is longer than ${MAX_WORKSPACE_PATH} characters`);
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(input)) throw refuse('contains control or invisible characters');
  let relative = input;
  if (relative.startsWith('/')) {
    if (relative !== WORKSPACE_DIR && !relative.startsWith(`${WORKSPACE_DIR}/`)) throw refuse(`is outside the workspace (${WORKSPACE_DIR})`);
    relative = relative.slice(WORKSPACE_DIR.length);
  }
  const parts = relative.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw refuse('contains ".." (the file tools never leave the workspace)');
  return parts.length === 0 ? WORKSPACE_DIR : `${WORKSPACE_DIR}/${parts.join('/')}`;
}
