import { MoatError } from '../errors.js';
import { FLAG_TEXT } from '../domain/review-flags.js';
import { assertObjectId, git } from '../workspace/git.js';
import { reviewChanges, type ReviewedFile } from '../workspace/review.js';
import type { MoatContext } from './context.js';
import { syncTask, type SyncResult } from './sync.js';

export interface DiffResult {
  task: string;
  branch: string;
  base: string;
  /** Committed work: base..branch tip. */
  tip: string;
  /** Committed + uncommitted work snapshot. */
  wip?: string;
  commits: number;
  uncommitted: boolean;
  files: ReviewedFile[];
  flagged: ReviewedFile[];
  /** The patch text (omitted with stat/name-only). */
  patch?: string;
  stat?: string;
  sync: SyncResult;
}

export async function diffTask(ctx: MoatContext, task: string, options: { patch?: boolean; stat?: boolean } = {}): Promise<DiffResult> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const sync = await syncTask(ctx, repo, record);
  const tip = sync.tip;
  const target = sync.wip ?? tip;
  const files = await reviewChanges(repo.path, record.baseCommit, target);
  const uncommitted = sync.wip ? (await git(['diff', '--quiet', tip, sync.wip], { cwd: repo.path, allowExit: [1] })).exitCode === 1 : false;
  const diffArgs = ['diff', '--no-ext-diff', '--no-textconv', '--no-color', assertObjectId(record.baseCommit, 'base'), assertObjectId(target, 'target')];
  const result: DiffResult = {
    task,
    branch: record.branch,
    base: record.baseCommit,
    tip,
    wip: sync.wip,
    commits: sync.commits,
    uncommitted,
    files,
    flagged: files.filter((f) => f.flags.length > 0),
    sync,
  };
  if (options.stat) result.stat = (await git([...diffArgs.slice(0, 1), '--stat', ...diffArgs.slice(1)], { cwd: repo.path })).stdout;
  if (options.patch) result.patch = (await git(diffArgs, { cwd: repo.path, raw: true })).stdout;
  return result;
}

export type MergeStrategy = 'merge' | 'squash' | 'rebase';

export interface MergeResult {
  task: string;
  into: string;
  strategy: MergeStrategy;
  head: string;
  commits: number;
  flagged: ReviewedFile[];
  /** Work the agent did not commit, which a merge does not carry (apply does). */
  uncommittedLeftBehind: boolean;
}

export function flagSummary(files: ReviewedFile[]): string {
  return files
    .map((f) => `${f.path}: ${f.flags.map((flag) => FLAG_TEXT[flag]).join(', ')}${f.linkTarget !== undefined ? ` -> ${JSON.stringify(f.linkTarget)}` : ''}`)
    .join('; ');
}

/**
 * Merges the task's committed work into the user's current branch. Refuses on a dirty checkout,
 * a detached HEAD, flagged changes without `yes`, and conflicts; a failed merge is rolled back
 * to exactly where the user was.
 */
export async function mergeTask(ctx: MoatContext, task: string, options: { strategy?: MergeStrategy; yes?: boolean } = {}): Promise<MergeResult> {
  const strategy = options.strategy ?? 'merge';
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const into = await repo.currentBranch();
  if (!into)
    throw new MoatError('E_GIT_HEAD', 'your checkout is on a detached HEAD; there is no branch to merge into', {
      hint: 'check out a branch first: git switch <branch>',
    });
  const dirty = await repo.dirtyFiles();
  if (dirty.length > 0) {
    throw new MoatError('E_DIRTY_CHECKOUT', `your checkout has uncommitted changes (${dirty.slice(0, 3).join(', ')}${dirty.length > 3 ? ', …' : ''})`, {
      hint: 'commit or stash them first (git stash), then merge',
    });
  }
  const review = await diffTask(ctx, task);
  if (review.sync.parkedAt) {
    throw new MoatError('E_BRANCH_MOVED', review.sync.warning ?? `${record.branch} was moved`, {
      hint: `merge ${review.sync.parkedAt} yourself after reviewing it, or reset the branch to it`,
    });
  }
  const tip = review.tip;
  const head = await repo.resolveCommit('HEAD');
  if (review.commits === 0 || (await repo.isAncestor(tip, head))) {
    return { task, into, strategy, head, commits: 0, flagged: [], uncommittedLeftBehind: review.uncommitted };
  }
  const committed = await reviewChanges(repo.path, record.baseCommit, tip);
  const flagged = committed.filter((f) => f.flags.length > 0);
  if (flagged.length > 0 && !options.yes) {
    throw new MoatError('E_CONFIRM', `the task changes files a host tool may run or follow: ${flagSummary(flagged)}`, {
      hint: `review them with \`moat diff ${task}\`, then merge with --yes`,
      details: { flagged: flagged.map((f) => ({ path: f.path, flags: f.flags })) },
    });
  }

  const cwd = repo.path;
  const message = `Merge moat task ${task} (${record.branch})`;
  try {
    if (strategy === 'merge') {
      await git(['merge', '--no-ff', '--no-edit', '--no-verify', '-m', message, assertObjectId(tip, 'tip')], { cwd });
    } else if (strategy === 'squash') {
      await git(['merge', '--squash', '--no-verify', assertObjectId(tip, 'tip')], { cwd });
      await git(['commit', '--no-verify', '--quiet', '-m', `moat task ${task}: squashed ${review.commits} commit(s) from ${record.branch}`], { cwd });
    } else {
      await git(['cherry-pick', '--allow-empty', '--keep-redundant-commits', `${assertObjectId(record.baseCommit, 'base')}..${assertObjectId(tip, 'tip')}`], {
        cwd,
      });
    }
  } catch (error) {
    // Put the checkout back exactly as it was: tracked files were clean before we started.
    for (const abort of [
      ['merge', '--abort'],
      ['cherry-pick', '--abort'],
    ])
      await git(abort, { cwd, allowExit: [1, 128] }).catch(() => undefined);
    await git(['reset', '--quiet', '--hard', head], { cwd }).catch(() => undefined);
    throw new MoatError('E_MERGE_CONFLICT', `merging ${record.branch} into ${into} conflicts; nothing was changed`, {
      hint: `resolve it yourself: git merge ${record.branch}, or ask the agent to rebase onto ${into}`,
      cause: error,
    });
  }
  return { task, into, strategy, head: await repo.resolveCommit('HEAD'), commits: review.commits, flagged, uncommittedLeftBehind: review.uncommitted };
}

/** Lays the task's work (committed and uncommitted) on the user's checkout as unstaged changes. */
export async function applyTask(
  ctx: MoatContext,
  task: string,
  options: { yes?: boolean } = {},
): Promise<{ task: string; files: number; flagged: ReviewedFile[] }> {
  const repo = await ctx.repo();
  const review = await diffTask(ctx, task);
  if (review.flagged.length > 0 && !options.yes) {
    throw new MoatError('E_CONFIRM', `the task changes files a host tool may run or follow: ${flagSummary(review.flagged)}`, {
      hint: `review them with \`moat diff ${task}\`, then apply with --yes`,
    });
  }
  const target = review.wip ?? review.tip;
  const patch = await git(['diff', '--binary', '--no-ext-diff', '--no-textconv', assertObjectId(review.base, 'base'), assertObjectId(target, 'target')], {
    cwd: repo.path,
    raw: true,
  });
  if (!patch.stdout.trim()) return { task, files: 0, flagged: [] };
  const check = await git(['apply', '--check', '-'], { cwd: repo.path, input: patch.stdout, allowExit: [1] });
  if (check.exitCode !== 0) {
    throw new MoatError('E_MERGE_CONFLICT', `the task's changes do not apply to your checkout: ${check.stderr.split('\n')[0]}`, {
      hint: 'commit or stash your changes, or merge the task branch instead',
    });
  }
  await git(['apply', '-'], { cwd: repo.path, input: patch.stdout });
  return { task, files: review.files.length, flagged: review.flagged };
}
