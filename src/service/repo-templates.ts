import { spawn } from 'node:child_process';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MoatError } from '../errors.js';
import { assertObjectId, git, gitEnv } from '../workspace/git.js';
import type { UserRepository } from '../workspace/user-repo.js';
import type { MoatContext } from './context.js';

/** Where a repository keeps its own templates (committed). */
export const REPO_TEMPLATES = '.moat/templates';

/** The repository's templates at a commit: name -> tree id (their content, as git names it). */
export async function repoTemplates(repo: UserRepository, commit: string): Promise<Map<string, string>> {
  const listing = await git(['ls-tree', '-z', assertObjectId(commit, 'commit'), '--', `${REPO_TEMPLATES}/`], { cwd: repo.path, allowExit: [128] });
  const found = new Map<string, string>();
  for (const entry of listing.stdout.split('\0')) {
    const match = /^040000 tree ([0-9a-f]{40,64})\t\.moat\/templates\/([a-z0-9][a-z0-9-]{0,39})$/.exec(entry);
    if (match) found.set(match[2]!, match[1]!);
  }
  return found;
}

export function approvalKey(name: string, tree: string): string {
  return `${name}@${tree}`;
}

/**
 * A repository template decides what runs, so it is used only once the user approved that exact
 * content (name and tree id: any change asks again). It is materialised from git objects into a
 * content-addressed folder of moat's, never read from the working tree.
 */
export async function approvedRepoTemplateRoot(ctx: MoatContext, repo: UserRepository, commit: string, name: string): Promise<string | undefined> {
  const tree = (await repoTemplates(repo, commit)).get(name);
  if (!tree) return undefined;
  const user = await ctx.userConfig();
  const approved = user.approvals?.[repo.path]?.templates ?? [];
  if (!approved.includes(approvalKey(name, tree))) {
    throw new MoatError('E_CONFIG_WIDENS', `the repository's template ${name} (${REPO_TEMPLATES}/${name}, content ${tree.slice(0, 12)}) is not approved`, {
      hint: `read ${REPO_TEMPLATES}/${name} (it decides what runs), then run \`moat approve\` in this repository`,
    });
  }
  const root = join(ctx.store.home, 'repo-templates', tree);
  const dir = join(root, name);
  if (await stat(join(dir, 'Dockerfile')).catch(() => undefined)) return root;
  const tmp = `${dir}.${process.pid}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await new Promise<void>((resolve, reject) => {
    const archive = spawn('git', ['archive', '--format=tar', tree], { cwd: repo.path, env: gitEnv(), stdio: ['ignore', 'pipe', 'ignore'] });
    // tar on the host extracts regular files only (links and devices are dropped), no absolute paths.
    const tar = spawn('tar', ['-x', '-C', tmp, '--no-same-owner', '--no-same-permissions', '--exclude=*..*'], { stdio: ['pipe', 'ignore', 'ignore'] });
    archive.stdout.pipe(tar.stdin);
    tar.on('close', (code) => (code === 0 ? resolve() : reject(new MoatError('E_CONFIG_INVALID', `could not unpack the repository template ${name}`, { hint: 'check the template folder' }))));
  });
  await mkdir(root, { recursive: true });
  await rename(tmp, dir).catch(async () => rm(tmp, { recursive: true, force: true }));
  return root;
}
