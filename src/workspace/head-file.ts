import { lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OBJECT_ID } from './git.js';

/** A ref name HEAD may point at and whose file moat reads: under refs/, no `..`, no odd bytes. */
const PLAIN_REF = /^refs\/(?:[A-Za-z0-9_.+@-]+\/)*[A-Za-z0-9_+@-][A-Za-z0-9_.+@-]*$/;

/**
 * The commit HEAD names, read from git's files instead of a `git rev-parse` child: in the warm
 * server every child is a fork of a large Node process, which stalls its event loop 20-90 ms on a
 * busy machine (docs/benchmarks.md, the fourth pass), and a claim of a spare reads HEAD first.
 *
 * Only the plain layout is read: a checkout whose `.git` is the common git directory itself, HEAD a
 * loose or packed branch or a detached id, files backend. Anything else (a linked worktree, a
 * symref chain, a reftable or unknown refs backend, an unborn branch, a file that does not parse)
 * answers undefined and the caller asks git, whose answer and errors stay the reference. Git
 * replaces ref files by rename, so each read sees a whole old or a whole new value; a ref moved from
 * its loose file into packed-refs meanwhile (`git pack-refs` writes packed-refs first) is found there.
 * The id is not peeled: a branch holding a tag's id (git makes none such itself) would be taken as
 * a commit, and the task's making fails at its first git step on it instead of here.
 */
export async function headFromFiles(top: string, gitDir: string): Promise<string | undefined> {
  try {
    const [dotGit, common] = await Promise.all([lstat(join(top, '.git')), lstat(gitDir)]);
    // The checkout's .git is the common directory itself (not a symlink, not a worktree's gitdir file).
    if (!dotGit.isDirectory() || dotGit.ino !== common.ino || dotGit.dev !== common.dev) return undefined;
    // Another refs backend keeps its refs elsewhere; the files below would be stale or absent.
    if (await exists(join(gitDir, 'reftable'))) return undefined;
    if (/^\s*refstorage\s*=/im.test(await readFile(join(gitDir, 'config'), 'utf8'))) return undefined;
    const head = (await readFile(join(gitDir, 'HEAD'), 'utf8')).replace(/\n$/, '');
    if (OBJECT_ID.test(head)) return head;
    const target = /^ref: (.+)$/.exec(head)?.[1];
    if (!target || !PLAIN_REF.test(target) || target.includes('..') || target.endsWith('.lock')) return undefined;
    const loose = await readFile(join(gitDir, target), 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (loose !== undefined) {
      const value = loose.replace(/\n$/, '');
      return OBJECT_ID.test(value) ? value : undefined;
    }
    return packedRef(await readFile(join(gitDir, 'packed-refs'), 'utf8').catch(() => ''), target);
  } catch {
    return undefined;
  }
}

/** A ref's value in packed-refs' text: `<id> <ref>` lines, `#` a header, `^` a peeled tag. */
export function packedRef(text: string, ref: string): string | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.startsWith('^')) continue;
    const space = line.indexOf(' ');
    if (space > 0 && line.slice(space + 1) === ref) {
      const id = line.slice(0, space);
      return OBJECT_ID.test(id) ? id : undefined;
    }
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}
