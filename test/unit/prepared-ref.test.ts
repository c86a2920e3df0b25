import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareCreateRef } from '../../src/workspace/prepared-ref.js';

const root = mkdtempSync(join(tmpdir(), 'moat-prepared-ref-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const env = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t', GIT_CONFIG_NOSYSTEM: '1' };
const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, env, encoding: 'utf8' }).trim();
const refValue = (cwd: string, ref: string) => {
  try {
    return git(cwd, 'rev-parse', '--verify', '--quiet', ref);
  } catch {
    return undefined;
  }
};
let count = 0;
function repo(): { dir: string; head: string } {
  const dir = join(root, `r${(count += 1)}`);
  git(root, 'init', '-q', '-b', 'main', dir);
  git(dir, 'commit', '-q', '--allow-empty', '-m', 'c');
  return { dir, head: git(dir, 'rev-parse', 'HEAD') };
}
const later = () => new Promise((resolve) => setTimeout(resolve, 300));

describe('a ref made by a git process started ahead', () => {
  it('writes nothing until create(), then makes the ref', async () => {
    const { dir, head } = repo();
    const prepared = prepareCreateRef(dir, 'refs/heads/moat/a', head, 'moat: create task branch');
    await later();
    expect(refValue(dir, 'refs/heads/moat/a')).toBeUndefined();
    expect(await prepared.create()).toBe(true);
    expect(refValue(dir, 'refs/heads/moat/a')).toBe(head);
    // Once only.
    expect(await prepared.create()).toBe(false);
  });

  it('refuses a ref that exists (made meanwhile), leaving it as it was', async () => {
    const { dir, head } = repo();
    const prepared = prepareCreateRef(dir, 'refs/heads/moat/b', head, 'moat: create task branch');
    git(dir, 'commit', '-q', '--allow-empty', '-m', 'd');
    const other = git(dir, 'rev-parse', 'HEAD');
    git(dir, 'update-ref', 'refs/heads/moat/b', other);
    expect(await prepared.create()).toBe(false);
    expect(refValue(dir, 'refs/heads/moat/b')).toBe(other);
  });

  it('cancel() makes nothing', async () => {
    const { dir, head } = repo();
    const prepared = prepareCreateRef(dir, 'refs/heads/moat/c', head, 'moat: create task branch');
    prepared.cancel();
    await later();
    expect(refValue(dir, 'refs/heads/moat/c')).toBeUndefined();
    expect(await prepared.create()).toBe(false);
    expect(refValue(dir, 'refs/heads/moat/c')).toBeUndefined();
  });
});
