import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { LABEL } from '../domain/labels.js';
import { parseJsonc, planDevcontainer, type DevcontainerPlan } from '../domain/devcontainer.js';
import type { ContainerEngine } from '../engine/engine.js';
import { MoatError } from '../errors.js';
import { assertObjectId, git, gitEnv } from '../workspace/git.js';
import type { UserRepository } from '../workspace/user-repo.js';
import { MOAT_VERSION } from '../version.js';

export interface DevcontainerBase {
  image: string;
  containerEnv: Record<string, string>;
  postCreateCommand?: string[];
  notes: string[];
}

/**
 * The environment a repository's devcontainer.json describes, as an image moat then builds its
 * template on. Everything is read from git objects of the task's base commit, never from the
 * working tree: the build context is `git archive` of that commit, so an uncommitted .env or a
 * local file can never reach the build, and what builds is what the task starts from.
 */
export async function devcontainerBase(
  repo: UserRepository,
  commit: string,
  engine: ContainerEngine,
  progress: (line: string) => void,
): Promise<DevcontainerBase> {
  assertObjectId(commit, 'commit');
  let found: { dir: string; text: string } | undefined;
  for (const [dir, file] of [
    ['.devcontainer', '.devcontainer/devcontainer.json'],
    ['', '.devcontainer.json'],
  ] as const) {
    const shown = await git(['show', `${commit}:${file}`], { cwd: repo.path, allowExit: [128] });
    if (shown.exitCode === 0) {
      found = { dir, text: shown.stdout };
      break;
    }
  }
  if (!found)
    throw new MoatError('E_CONFIG_INVALID', "no committed .devcontainer/devcontainer.json at the task's base", {
      hint: 'commit it first (moat reads it from git, not from your working tree), or drop --devcontainer',
    });
  let json: unknown;
  try {
    json = parseJsonc(found.text);
  } catch (error) {
    throw new MoatError('E_CONFIG_INVALID', `devcontainer.json is not valid JSON: ${(error as Error).message}`, {
      hint: 'fix the file (comments and trailing commas are fine)',
    });
  }
  const result = planDevcontainer(json, found.dir);
  if ('refused' in result) {
    throw new MoatError(
      'E_CONFIG_WIDENS',
      `devcontainer.json: ${result.refused[0]}${result.refused.length > 1 ? ` (and ${result.refused.length - 1} more)` : ''}`,
      {
        hint: 'remove those settings from devcontainer.json; moat keeps its own hardening',
        details: { refused: result.refused },
      },
    );
  }
  const plan = result.plan;
  for (const note of plan.notes) progress(`devcontainer: ${note}`);
  return {
    image: await imageFor(plan, repo, commit, engine, progress),
    containerEnv: plan.containerEnv,
    postCreateCommand: plan.postCreateCommand,
    notes: plan.notes,
  };
}

async function imageFor(
  plan: DevcontainerPlan,
  repo: UserRepository,
  commit: string,
  engine: ContainerEngine,
  progress: (line: string) => void,
): Promise<string> {
  if (plan.image) {
    if (!(await engine.imageId(plan.image))) {
      throw new MoatError('E_IMAGE_MISSING', `devcontainer image ${plan.image} is not on this machine`, {
        hint: 'moat never pulls: build or load it locally first (docker load / docker build), or use build.dockerfile',
      });
    }
    return plan.image;
  }
  const build = plan.build!;
  const treeSpec = build.context ? `${commit}:${build.context}` : `${commit}^{tree}`;
  const tree = (await git(['rev-parse', '--verify', treeSpec], { cwd: repo.path, allowExit: [128] })).stdout.trim();
  if (!/^[0-9a-f]{40,64}$/.test(tree))
    throw new MoatError('E_CONFIG_INVALID', `devcontainer build context ${build.context || '.'} is not a committed folder`, { hint: 'fix build.context' });
  if (build.context && !build.dockerfile.startsWith(`${build.context}/`)) {
    throw new MoatError('E_CONFIG_INVALID', 'build.dockerfile must be inside build.context', { hint: 'move the Dockerfile into the context folder' });
  }
  const dockerfile = build.context ? build.dockerfile.slice(build.context.length + 1) : build.dockerfile;
  const tag = `moat-devcontainer:${createHash('sha256')
    .update(`${tree}\0${dockerfile}\0${JSON.stringify(build.args)}`)
    .digest('hex')
    .slice(0, 16)}`;
  if (await engine.imageId(tag)) return tag;
  progress(`building the devcontainer image ${tag} from ${build.dockerfile} (committed files only)`);
  const archive = spawn('git', ['archive', '--format=tar', tree], { cwd: repo.path, env: gitEnv(), stdio: ['ignore', 'pipe', 'ignore'] });
  await engine.buildImage({
    contextDir: '',
    files: [],
    tar: archive.stdout,
    dockerfile,
    tag,
    buildArgs: build.args,
    labels: { [LABEL.version]: MOAT_VERSION, [LABEL.role]: 'devcontainer-image' },
    onProgress: progress,
  });
  return tag;
}
