import { createReadStream } from 'node:fs';
import { appendFile, lchown, lstat, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { WORKSPACE_DIR } from '../domain/sandbox-spec.js';
import { MoatError } from '../errors.js';
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

/**
 * Runs in the sandbox, as the sandbox user, in the empty workspace volume: a repository made from
 * the bundle on stdin (the task branch's history only, as the host fetch above takes). The script
 * is a constant; branch, source ref, base and identity are positional arguments, never spliced in.
 * git config writes the identity quoted.
 */
const SEED_SCRIPT = `
set -eu
PATH=/usr/local/bin:/usr/bin:/bin
cd "$0"
[ -z "$(ls -A .)" ] || { echo "the workspace volume is not empty" >&2; exit 3; }
git init --quiet --initial-branch="$1" .
cat > .git/moat-seed.bundle
git -c core.hooksPath=/dev/null fetch --quiet --no-tags --update-head-ok .git/moat-seed.bundle "+$2:refs/heads/$1"
rm -f .git/moat-seed.bundle
git -c core.hooksPath=/dev/null reset --quiet --hard "$3"
git config user.name "$4"
git config user.email "$5"
`;

/**
 * The same repository as {@link createTaskWorkspace}, for a workspace in an engine volume: the
 * host writes a bundle of the task branch from the user's repository (host git reads only the
 * user's repository) and streams it into the sandbox's exec; the sandbox's git unpacks it.
 */
export async function seedVolumeWorkspace(input: {
  repo: UserRepository;
  branch: string;
  baseCommit: string;
  sourceRef: string;
  identity: { name?: string; email?: string };
  /** A host file moat owns, for the bundle while it is streamed (removed afterwards). */
  bundleFile: string;
  exec: (cmd: string[], stdin: Readable) => Promise<{ exitCode: number; stderr: string }>;
}): Promise<void> {
  await git(['bundle', 'create', '--quiet', input.bundleFile, input.sourceRef], { cwd: input.repo.path });
  try {
    const name = (input.identity.name ?? 'moat agent').replace(/[\r\n]/g, ' ');
    const email = (input.identity.email ?? 'agent@moat.invalid').replace(/[\r\n]/g, ' ');
    const run = await input.exec(
      ['sh', '-c', SEED_SCRIPT, WORKSPACE_DIR, input.branch, input.sourceRef, assertObjectId(input.baseCommit, 'base'), name, email],
      await seedStream(input.bundleFile),
    );
    if (run.exitCode !== 0) {
      throw new MoatError(
        'E_ENGINE_FAILED',
        `could not put the task's repository into its workspace volume: ${run.stderr.trim().split('\n').pop() || `exit ${run.exitCode}`}`,
        {
          hint: 'check the engine with `moat doctor` (a full engine disk?), then run the command again',
        },
      );
    }
  } finally {
    await rm(input.bundleFile, { force: true });
  }
}

/**
 * The bundle as the seed sends it. Test hook, as pending-sync.ts's killPoint: with
 * MOAT_TEST_KILL_AT=seed-mid-bundle moat sends half of it, and SIGKILLs itself (as kill -9 would)
 * while the sandbox waits for the rest: a half-copied workspace, which `moat gc` must remove whole.
 */
async function seedStream(bundleFile: string): Promise<Readable> {
  if (process.env.MOAT_TEST_KILL_AT !== 'seed-mid-bundle') return createReadStream(bundleFile);
  const { size } = await stat(bundleFile);
  const rest = new PassThrough();
  createReadStream(bundleFile, { end: Math.max(0, Math.floor(size / 2) - 1) })
    .on('end', () => setTimeout(() => process.kill(process.pid, 'SIGKILL'), 500))
    .pipe(rest, { end: false });
  return rest;
}

/**
 * Runs in the sandbox after {@link SEED_SCRIPT}: the snapshot commit on stdin (a bundle of it over
 * the tip) becomes the working tree again, the index staying at the tip, so what was uncommitted
 * is uncommitted again (new files untracked). Constant; the tip is a positional argument.
 */
const RESTORE_SCRIPT = `
set -eu
PATH=/usr/local/bin:/usr/bin:/bin
cd "$0"
cat > .git/moat-wip.bundle
git -c core.hooksPath=/dev/null fetch --quiet --no-tags .git/moat-wip.bundle "+$2:refs/moat/wip"
rm -f .git/moat-wip.bundle
[ "$(git rev-parse refs/moat/wip^)" = "$1" ] || { echo "the snapshot of uncommitted work is not over the task's tip" >&2; exit 3; }
git -c core.hooksPath=/dev/null read-tree --reset -u refs/moat/wip
git -c core.hooksPath=/dev/null reset --quiet
`;

/** Puts a task's uncommitted work (its snapshot ref at home, over `tip`) back into a freshly seeded workspace. */
export async function restoreUncommitted(input: {
  repo: UserRepository;
  wipRef: string;
  tip: string;
  bundleFile: string;
  exec: (cmd: string[], stdin: Readable) => Promise<{ exitCode: number; stderr: string }>;
}): Promise<void> {
  const tip = assertObjectId(input.tip, 'tip');
  await git(['bundle', 'create', '--quiet', input.bundleFile, input.wipRef, `^${tip}`], { cwd: input.repo.path });
  try {
    const run = await input.exec(['sh', '-c', RESTORE_SCRIPT, WORKSPACE_DIR, tip, input.wipRef], createReadStream(input.bundleFile));
    if (run.exitCode !== 0) {
      throw new MoatError(
        'E_ENGINE_FAILED',
        `could not put the task's uncommitted work back: ${run.stderr.trim().split('\n').pop() || `exit ${run.exitCode}`}`,
        {
          hint: `it is safe at home: git diff ${tip} ${input.wipRef}`,
        },
      );
    }
  } finally {
    await rm(input.bundleFile, { force: true });
  }
}
