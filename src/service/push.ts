import { MoatError } from '../errors.js';
import { git } from '../workspace/git.js';
import type { MoatContext } from './context.js';
import { syncTask } from './sync.js';

/**
 * Pushing is the host's job: the task branch goes to the user's remote with the user's own
 * credentials, after the user has reviewed it. The remote must be one the user configured.
 */
export async function pushTask(
  ctx: MoatContext,
  task: string,
  options: { remote?: string } = {},
): Promise<{ task: string; remote: string; branch: string; tip: string }> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  const remote = options.remote ?? 'origin';
  const remotes = (await git(['remote'], { cwd: repo.path })).stdout.split('\n').filter(Boolean);
  if (!remotes.includes(remote)) {
    throw new MoatError('E_GIT_REF', `no remote named ${JSON.stringify(remote)} in ${repo.path}`, {
      hint: remotes.length ? `use --remote with one of: ${remotes.join(', ')}` : 'add one: git remote add origin <url>',
    });
  }
  const sync = await syncTask(ctx, repo, record);
  if (sync.parkedAt)
    throw new MoatError('E_BRANCH_MOVED', sync.warning ?? `${record.branch} was moved`, { hint: 'push the branch yourself after reviewing it' });
  const pushed = await git(['push', '--porcelain', '--end-of-options', remote, `refs/heads/${record.branch}:refs/heads/${record.branch}`], {
    cwd: repo.path,
    allowExit: [1, 128],
  });
  if (pushed.exitCode !== 0) {
    throw new MoatError(
      'E_GIT_FAILED',
      `pushing ${record.branch} to ${remote} failed: ${(pushed.stderr || pushed.stdout).split('\n').find((l) => l.trim()) ?? ''}`,
      { hint: `try git push ${remote} ${record.branch} yourself` },
    );
  }
  return { task, remote, branch: record.branch, tip: sync.tip };
}
