import { lstat, realpath } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { MoatError } from '../errors.js';
import { assertObjectId, git } from './git.js';
import { headFromFiles } from './head-file.js';

/**
 * The user's own repository. moat runs git here only with hardening flags, only with refs it
 * named itself or full object ids, and only changes `refs/heads/moat/*`, `refs/moat/*` and,
 * through `merge`/`apply`, the user's checkout.
 */
export class UserRepository {
  private constructor(
    /** Real path of the working tree top level. */
    readonly path: string,
    /** Real path of the common git directory (shared by the user's worktrees). */
    readonly gitDir: string,
  ) {}

  static async open(cwd: string): Promise<UserRepository> {
    // One git process in the common case (a checkout); the failure is told apart afterwards.
    const quick = await git(['rev-parse', '--git-common-dir', '--show-toplevel'], { cwd, allowExit: [128] });
    const [quickCommon, quickTop] = quick.stdout.split('\n');
    if (quick.exitCode === 0 && quickCommon && quickTop) return new UserRepository(await realpath(quickTop), await realpath(resolve(cwd, quickCommon)));
    const probe = await git(['rev-parse', '--is-bare-repository', '--git-common-dir'], { cwd, allowExit: [128] });
    if (probe.exitCode !== 0) {
      throw new MoatError('E_NOT_GIT_REPO', `${cwd} is not inside a git repository`, { hint: 'cd into your project, or run `git init` and commit first' });
    }
    const [bare, common] = probe.stdout.split('\n');
    const top = bare === 'true' ? undefined : (await git(['rev-parse', '--show-toplevel'], { cwd, allowExit: [128] })).stdout.trim();
    if (!top) {
      throw new MoatError('E_NOT_GIT_REPO', `${cwd} is a bare repository (no working tree)`, {
        hint: 'run moat in a checkout: git clone <bare> <dir> && cd <dir>',
      });
    }
    const topReal = await realpath(top);
    const gitDir = await realpath(resolve(cwd, common ?? '.git'));
    return new UserRepository(topReal, gitDir);
  }

  /** Stable key of this repository in moat's state and labels: readable name + hash of its git dir. */
  get key(): string {
    const name =
      basename(this.path)
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, '-')
        .replace(/^-+|-+$/g, '')
        .slice(0, 24) || 'repo';
    return `${name}-${createHash('sha256').update(this.gitDir).digest('hex').slice(0, 10)}`;
  }

  private run(args: string[], allowExit?: number[]) {
    return git(args, { cwd: this.path, allowExit });
  }

  /** Resolves a user-given ref to a commit id; `HEAD` on an unborn branch is a clear error. */
  async resolveCommit(ref: string): Promise<string> {
    // HEAD, the common case, from git's files where their layout is plain (no git child: head-file.ts).
    const fromFiles = ref === 'HEAD' ? await headFromFiles(this.path, this.gitDir) : undefined;
    if (fromFiles) return fromFiles;
    const result = await this.run(['rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`], [1, 128]);
    if (result.exitCode !== 0) {
      if (ref === 'HEAD') {
        throw new MoatError('E_GIT_HEAD', 'the repository has no commits yet (unborn HEAD)', { hint: 'make a first commit: git add -A && git commit -m init' });
      }
      throw new MoatError('E_GIT_REF', `no commit named ${JSON.stringify(ref)} in ${this.path}`, {
        hint: 'pass --base a branch, tag or commit that exists (git log --oneline shows them)',
      });
    }
    return assertObjectId(result.stdout.trim(), 'resolved commit');
  }

  /** The checked-out branch, or undefined on a detached HEAD. */
  async currentBranch(): Promise<string | undefined> {
    const result = await this.run(['symbolic-ref', '--quiet', '--short', 'HEAD'], [1, 128]);
    return result.exitCode === 0 ? result.stdout.trim() : undefined;
  }

  /** Value of a ref moat owns, or undefined when it does not exist. */
  async refValue(ref: string): Promise<string | undefined> {
    const result = await this.run(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], [1, 128]);
    return result.exitCode === 0 ? assertObjectId(result.stdout.trim(), ref) : undefined;
  }

  /** Creates `ref` at `commit`, failing if it already exists (atomic: no check-then-act race). */
  async createRef(ref: string, commit: string): Promise<void> {
    const result = await this.run(['update-ref', '--no-deref', '-m', 'moat: create task branch', ref, assertObjectId(commit, 'commit'), '0'.repeat(40)], [128]);
    if (result.exitCode !== 0) {
      throw new MoatError('E_TASK_EXISTS', `${ref.replace('refs/heads/', '')} already exists in ${this.path}`, {
        hint: 'choose another --task name, or remove the old task with `moat rm`',
      });
    }
  }

  /** Moves `ref` from `expected` (undefined: must not exist) to `commit`; returns false if someone else moved it. */
  async compareAndSetRef(ref: string, commit: string, expected: string | undefined, message: string): Promise<boolean> {
    const old = expected === undefined ? '0'.repeat(40) : assertObjectId(expected, 'expected');
    const result = await this.run(['update-ref', '--no-deref', '-m', message, ref, assertObjectId(commit, 'commit'), old], [128]);
    return result.exitCode === 0;
  }

  /** Deletes `ref`; with `expected`, only while it still points there. */
  async deleteRef(ref: string, expected?: string): Promise<boolean> {
    const args = ['update-ref', '--no-deref', '-d', ref];
    if (expected) args.push(assertObjectId(expected, 'expected'));
    const result = await this.run(args, [1, 128]);
    return result.exitCode === 0;
  }

  /** Deletes refs moat owns in one git process; refs that do not exist are fine. */
  async deleteRefs(refs: string[]): Promise<void> {
    // One transaction; a ref that does not exist is no error.
    await git(['update-ref', '--no-deref', '--stdin'], { cwd: this.path, input: refs.map((ref) => `delete ${ref}\n`).join('') });
  }

  /** Is `ancestor` reachable from `descendant`? */
  async isAncestor(ancestor: string, descendant: string): Promise<boolean> {
    const result = await this.run(['merge-base', '--is-ancestor', assertObjectId(ancestor, 'ancestor'), assertObjectId(descendant, 'descendant')], [1]);
    return result.exitCode === 0;
  }

  /** Commits in `tip` not in `base`. */
  async countCommits(base: string, tip: string): Promise<number> {
    // A branch still at its base (every `run` that committed nothing): no git process to say 0.
    if (assertObjectId(base, 'base') === assertObjectId(tip, 'tip')) return 0;
    const result = await this.run(['rev-list', '--count', `${assertObjectId(base, 'base')}..${assertObjectId(tip, 'tip')}`]);
    return Number(result.stdout.trim());
  }

  /**
   * Imports a bundle the sandbox produced. The bundle is data: git verifies it, checks every
   * object (transfer.fsckObjects) and writes only the refs named here, under refs/moat/.
   */
  async importBundle(bundleFile: string, refspecs: string[]): Promise<void> {
    await this.run([
      'fetch',
      '--quiet',
      '--no-tags',
      '--no-write-fetch-head',
      '--no-recurse-submodules',
      '--no-auto-gc',
      '--end-of-options',
      bundleFile,
      ...refspecs,
    ]);
  }

  /** Refs a bundle file carries, read from its header (the bundle is data; nothing in it runs). */
  async bundleHeads(bundleFile: string): Promise<Map<string, string>> {
    const result = await this.run(['bundle', 'list-heads', '--end-of-options', bundleFile]);
    const heads = new Map<string, string>();
    for (const line of result.stdout.split('\n')) {
      const [id, ref] = line.split(' ');
      if (id && ref) heads.set(ref, assertObjectId(id, ref));
    }
    return heads;
  }

  /** Uncommitted changes to tracked files (untracked files do not block a merge). */
  async dirtyFiles(): Promise<string[]> {
    const result = await this.run(['status', '--porcelain=v1', '-z', '--untracked-files=no']);
    return result.stdout
      .split('\0')
      .filter(Boolean)
      .map((entry) => entry.slice(3));
  }

  async userIdentity(): Promise<{ name?: string; email?: string }> {
    const result = await this.run(['config', '-z', '--get-regexp', '^user\\.(name|email)$'], [1]);
    const identity: { name?: string; email?: string } = {};
    for (const entry of result.stdout.split('\0')) {
      const at = entry.indexOf('\n');
      if (at < 0) continue;
      const key = entry.slice(0, at);
      const value = entry.slice(at + 1).trim();
      if (key === 'user.name' && value) identity.name = value;
      if (key === 'user.email' && value) identity.email = value;
    }
    return identity;
  }
}

/**
 * Where the repositories of working directories were found, for a process that serves many
 * commands (the warm server): finding one takes a git process, checking the answer a few lstat
 * calls. An entry holds while the directories from cwd up to the top level are the same ones
 * (inode numbers) and none of them gained or lost a .git; else git is asked again.
 */
export class RepositoryCache {
  private readonly entries = new Map<string, { repo: UserRepository; proof: string }>();

  async open(cwd: string): Promise<UserRepository> {
    const entry = this.entries.get(cwd);
    if (entry && (await layoutProof(cwd, entry.repo.path)) === entry.proof) return entry.repo;
    const repo = await UserRepository.open(cwd);
    const proof = await layoutProof(cwd, repo.path);
    if (proof !== undefined) this.entries.set(cwd, { repo, proof });
    return repo;
  }
}

async function layoutProof(cwd: string, top: string): Promise<string | undefined> {
  try {
    const parts: string[] = [];
    for (let dir = await realpath(cwd); ; dir = dirname(dir)) {
      const [self, dotGit] = await Promise.all([lstat(dir), lstat(join(dir, '.git')).catch(() => undefined)]);
      // A .git file (a linked worktree) names its git directory in its content: its mtime counts too.
      parts.push(`${dir}:${self.ino}:${dotGit ? `${dotGit.ino}${dotGit.isFile() ? `@${dotGit.mtimeMs}` : ''}` : '-'}`);
      if (dir === top || dir === dirname(dir)) break;
    }
    return parts.join('/');
  } catch {
    return undefined;
  }
}
