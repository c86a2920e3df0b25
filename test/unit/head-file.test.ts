import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { headFromFiles, packedRef } from '../../src/workspace/head-file.js';
import { UserRepository } from '../../src/workspace/user-repo.js';

// Each case checks the file reader against git itself on a real repository.
const root = realpathSync(mkdtempSync(join(tmpdir(), 'moat-head-file-')));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const env = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t', GIT_CONFIG_NOSYSTEM: '1' };
const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, env, encoding: 'utf8' }).trim();
let count = 0;
function repo(commits = 1): string {
  const dir = join(root, `r${(count += 1)}`);
  git(root, 'init', '-q', '-b', 'main', dir);
  for (let i = 0; i < commits; i += 1) git(dir, 'commit', '-q', '--allow-empty', '-m', `c${i}`);
  return dir;
}
const fromGit = (dir: string) => git(dir, 'rev-parse', '--verify', 'HEAD^{commit}');
const read = (dir: string) => headFromFiles(dir, join(dir, '.git'));

describe('HEAD read from the ref files, git as the fallback', () => {
  it('a loose branch: the same id as git', async () => {
    const dir = repo(2);
    expect(await read(dir)).toBe(fromGit(dir));
  });

  it('a packed branch (after git pack-refs), and one packed then moved again (loose wins)', async () => {
    const dir = repo(2);
    git(dir, 'pack-refs', '--all');
    expect(await read(dir)).toBe(fromGit(dir));
    git(dir, 'commit', '-q', '--allow-empty', '-m', 'after pack');
    expect(await read(dir)).toBe(fromGit(dir));
    expect(await read(dir)).not.toBe(git(dir, 'rev-parse', 'HEAD~1'));
  });

  it('a detached HEAD', async () => {
    const dir = repo(3);
    git(dir, 'checkout', '-q', '--detach', 'HEAD~1');
    expect(await read(dir)).toBe(fromGit(dir));
  });

  it("an unborn branch answers nothing, and resolveCommit still gives git's clear error", async () => {
    const dir = repo(0);
    expect(await read(dir)).toBeUndefined();
    const user = await UserRepository.open(dir);
    await expect(user.resolveCommit('HEAD')).rejects.toMatchObject({ code: 'E_GIT_HEAD' });
  });

  it('a linked worktree is left to git (its HEAD is elsewhere), and resolveCommit gives its own HEAD', async () => {
    const dir = repo(2);
    const linked = join(root, `wt${count}`);
    git(dir, 'worktree', 'add', '-q', '--detach', linked, 'HEAD~1');
    const user = await UserRepository.open(linked);
    expect(await headFromFiles(user.path, user.gitDir)).toBeUndefined();
    expect(await user.resolveCommit('HEAD')).toBe(fromGit(linked));
    expect(await user.resolveCommit('HEAD')).not.toBe(fromGit(dir));
  });

  it('a symref chain (HEAD to a branch that is itself a symref) is left to git', async () => {
    const dir = repo(1);
    git(dir, 'symbolic-ref', 'refs/heads/alias', 'refs/heads/main');
    git(dir, 'symbolic-ref', 'HEAD', 'refs/heads/alias');
    expect(await read(dir)).toBeUndefined();
    expect(await (await UserRepository.open(dir)).resolveCommit('HEAD')).toBe(fromGit(dir));
  });

  it('another refs backend named in the config is left to git', async () => {
    const dir = repo(1);
    expect(await read(dir)).toBe(fromGit(dir));
    git(dir, 'config', 'extensions.refStorage', 'reftable');
    expect(await read(dir)).toBeUndefined();
  });

  it('resolveCommit on the plain layout gives what git gives', async () => {
    const dir = repo(2);
    expect(await (await UserRepository.open(dir)).resolveCommit('HEAD')).toBe(fromGit(dir));
  });

  it('packed-refs text: peeled lines and headers skipped, only the exact name', () => {
    const a = 'a'.repeat(40);
    const b = 'b'.repeat(40);
    const text = `# pack-refs with: peeled fully-peeled sorted\n${a} refs/heads/main-old\n${b} refs/heads/main\n^${a}\n`;
    expect(packedRef(text, 'refs/heads/main')).toBe(b);
    expect(packedRef(text, 'refs/heads/mai')).toBeUndefined();
  });
});
