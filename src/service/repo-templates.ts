import { spawn } from 'node:child_process';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MoatError } from '../errors.js';
import { assertObjectId, git, gitEnv } from '../workspace/git.js';
import type { UserRepository } from '../workspace/user-repo.js';
import type { MoatContext } from './context.js';
import type { EffectiveConfig } from '../config/effective.js';
import { chooseTemplate, detectToolchains, statedTemplate, type TemplateChoice } from '../domain/toolchain.js';
import { templateRoot } from '../image/template-image.js';
import { loadTemplate, templateName, type TemplateSpec } from '../image/template.js';

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
    tar.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(new MoatError('E_CONFIG_INVALID', `could not unpack the repository template ${name}`, { hint: 'check the template folder' })),
    );
  });
  await mkdir(root, { recursive: true });
  await rename(tmp, dir).catch(async () => rm(tmp, { recursive: true, force: true }));
  return root;
}

/** The names of the files at the top level of a commit's tree, read from git objects (never the working tree). */
export async function topLevelFiles(repo: UserRepository, commit: string): Promise<string[]> {
  const listing = await git(['ls-tree', '-z', assertObjectId(commit, 'commit')], { cwd: repo.path });
  const names: string[] = [];
  for (const entry of listing.stdout.split('\0')) {
    const match = /^(?:100644|100755|120000) blob [0-9a-f]{40,64}\t(.+)$/s.exec(entry);
    if (match) names.push(match[1]!);
  }
  return names;
}

export interface ChosenTemplate {
  choice: TemplateChoice;
  /** The folder holding the template (a user's, the built-in one, or an approved repository template's). */
  root: string;
  spec: TemplateSpec;
}

/**
 * The template a new task gets (see chooseTemplate): the -t flag, your config, the repository's
 * moat.yaml, else the toolchains its files at the base commit point at. `detect: false` (a
 * devcontainer is the environment) leaves detection out.
 */
export async function chooseTaskTemplate(
  ctx: MoatContext,
  repo: UserRepository,
  commit: string,
  config: EffectiveConfig,
  flag: string | undefined,
  detect = true,
): Promise<ChosenTemplate> {
  const stated = statedTemplate({
    flag,
    user: config.templateSource === 'user' ? config.template : undefined,
    repo: config.templateSource === 'repo' ? config.template : undefined,
  });
  const locate = (reference: string): Promise<string> =>
    templateRoot(reference, config.templateDirs).catch(async (error: unknown) => {
      // Not one of yours or built in: a template the repository carries, if you approved it.
      const fromRepo = await approvedRepoTemplateRoot(ctx, repo, commit, templateName(reference));
      if (!fromRepo) throw error;
      return fromRepo;
    });
  const statedSpec = stated ? await loadTemplate(await locate(stated.ref), stated.ref) : undefined;
  // A commit names its content: a long-lived process reads its top level once.
  const files = () => ctx.caches?.commitAnswer(repo.gitDir, commit, 'top-level files', () => topLevelFiles(repo, commit)) ?? topLevelFiles(repo, commit);
  const detection = detect && (!statedSpec || statedSpec.detect) ? detectToolchains(await files()) : { toolchains: [], markers: [] };
  const choice = chooseTemplate(stated, detection, statedSpec ?? {});
  const root = await locate(choice.template);
  return { choice, root, spec: await loadTemplate(root, choice.template) };
}
