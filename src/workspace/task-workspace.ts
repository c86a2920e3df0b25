import { appendFile, lchown, lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { assertObjectId, git } from './git.js';
import type { UserRepository } from './user-repo.js';

/**
 * The repository the sandbox works in: a separate clone of the task branch, never a worktree
 * of the user's repository. The sandbox owns it completely (hooks, config, refs), so nothing it
 * plants there can reach the user's `.git`: commits come home as a bundle (see sync).
 */
export async function createTaskWorkspace(input: {
  repo: UserRepository;
  branch: string;
  baseCommit: string;
  path: string;
  identity: { name?: string; email?: string };
  owner?: { uid: number; gid: number };
  /** The user's ref to fetch the base from (default: the task branch). */
  sourceRef?: string;
}): Promise<void> {
  const { path, branch } = input;
  const source = input.sourceRef ?? `refs/heads/${branch}`;
  await mkdir(path, { recursive: true, mode: 0o755 });
  await git(['init', '--quiet', `--initial-branch=${branch}`, path], { cwd: path });
  // Fetch packs objects over the local transport: no hardlinks into the user's object store
  // (CVE-2024-32020) and only the history of the base commit, not every branch and stash.
  await git(['fetch', '--quiet', '--no-tags', '--update-head-ok', '--end-of-options', input.repo.path, `+${source}:refs/heads/${branch}`], { cwd: path });
  await git(['reset', '--quiet', '--hard', assertObjectId(input.baseCommit, 'base')], { cwd: path });
  const name = input.identity.name ?? 'moat agent';
  const email = input.identity.email ?? 'agent@moat.invalid';
  // The repository was created a moment ago by moat: its config is ours to append to (quoted, so
  // an identity cannot inject config lines).
  const quote = (value: string) => `"${value.replace(/[\\"]/g, '\\$&').replace(/[\r\n]/g, ' ')}"`;
  await appendFile(join(path, '.git', 'config'), `[user]\n\tname = ${quote(name)}\n\temail = ${quote(email)}\n`);
  if (input.owner) await chownTree(path, input.owner.uid, input.owner.gid);
}

/** Hands a freshly made tree to the sandbox user. lchown and lstat: links are changed, never followed. */
async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await lchown(path, uid, gid);
  const info = await lstat(path);
  if (!info.isDirectory()) return;
  for (const entry of await readdir(path)) await chownTree(join(path, entry), uid, gid);
}

/** Removes a workspace; fs.rm does not follow links, so a link planted inside cannot aim it elsewhere. */
export async function removeTaskWorkspace(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true, maxRetries: 2 });
}
