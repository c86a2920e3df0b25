import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { captureIO, gitIn, Scratch, sh } from '../helpers/fixtures.js';

const HOOKS = [
  'applypatch-msg',
  'pre-applypatch',
  'post-applypatch',
  'pre-commit',
  'pre-merge-commit',
  'prepare-commit-msg',
  'commit-msg',
  'post-commit',
  'pre-rebase',
  'post-checkout',
  'post-merge',
  'pre-push',
  'pre-receive',
  'update',
  'proc-receive',
  'post-receive',
  'post-update',
  'reference-transaction',
  'push-to-checkout',
  'pre-auto-gc',
  'post-rewrite',
  'sendemail-validate',
  'fsmonitor-watchman',
  'p4-changelist',
  'p4-prepare-changelist',
  'p4-post-changelist',
  'p4-pre-submit',
  'post-index-change',
];

/**
 * The agent plants everything git might execute or follow, from inside a real sandbox. Then every
 * moat host command and the user's own git commands run, and nothing planted may act on the host.
 */
describe('the git boundary holds', () => {
  const scratch = new Scratch();
  const markers = join(scratch.root, 'markers');
  const secretDir = join(scratch.root, 'host-secrets');
  const secretFile = join(secretDir, 'id_ed25519');
  const SECRET = 'HOST-PRIVATE-KEY-CONTENT-do-not-leak';
  let moat: Moat;
  let userGitBefore: { config: string; hooks: string[] };

  beforeAll(async () => {
    mkdirSync(markers);
    mkdirSync(secretDir);
    writeFileSync(secretFile, `${SECRET}\n`);
    moat = scratch.moat();
    await moat.up({ task: 'attack' });
    userGitBefore = { config: readFileSync(join(scratch.repo, '.git', 'config'), 'utf8'), hooks: readdirSync(join(scratch.repo, '.git', 'hooks')).sort() };

    const touch = (name: string) => `touch ${join(markers, name)}`;
    const plant = [
      'set -e',
      // Files first, committed like any agent's work: attributes routing every file through a
      // planted filter and textconv, a submodule with a command as update strategy, links to
      // host files and to the user's repository, a hardlink, odd names, and a legit change.
      'printf "* filter=evil diff=evil\\n" > .gitattributes',
      `printf '[submodule "x"]\\n\\tpath = sub\\n\\turl = /\\n\\tupdate = !${touch('submodule')}\\n' > .gitmodules`,
      `printf '[core]\\n\\tfsmonitor = "${touch('include')}"\\n' > evil.config`,
      `ln -s ${secretFile} stolen-key`,
      'ln -s /etc/passwd passwd-link',
      `ln -s ${scratch.repo}/.git user-git`,
      'mkdir -p linkdir && ln -s /etc linkdir/etc',
      'echo legit > legit.txt && ln legit.txt hardlink.txt',
      `printf x > "$(printf 'new\\nline')"`,
      `printf x > "$(printf 'esc\\033[31mred')"`,
      'git add -A',
      'git commit -qm "legit work plus plants"',
      // Then everything git might execute: every hook, in the repository's hooks folder and in a
      // hooksPath of its choosing, and every config key that names a command.
      'mkdir -p .git/hooks evil-hooks',
      ...HOOKS.map(
        (hook) =>
          `printf '#!/bin/sh\\n${touch(`hook-${hook}`)}\\n' > .git/hooks/${hook}; chmod +x .git/hooks/${hook}; cp .git/hooks/${hook} evil-hooks/${hook}`,
      ),
      `git config core.hooksPath "$PWD/evil-hooks"`,
      `git config core.fsmonitor "${touch('fsmonitor')}; false"`,
      `git config core.sshCommand "${touch('sshcommand')}"`,
      `git config core.editor "${touch('editor')}"`,
      `git config core.pager "${touch('pager')}"`,
      `git config diff.external "${touch('diff-external')}"`,
      `git config filter.evil.clean "${touch('filter-clean')}; cat"`,
      `git config filter.evil.smudge "${touch('filter-smudge')}; cat"`,
      `git config filter.evil.process "${touch('filter-process')}"`,
      `git config diff.evil.textconv "${touch('textconv')}; cat"`,
      'git config include.path "$PWD/evil.config"',
      'git config includeIf.gitdir:/.path "$PWD/evil.config"',
      'git config --add safe.directory "*"',
      `git config alias.st "!${touch('alias')}"`,
    ].join('\n');
    const cap = captureIO();
    const result = await moat.exec('attack', ['sh', '-c', plant], cap.io, { sync: false });
    expect(result.exitCode, cap.err()).toBe(0);
  });
  afterAll(() => scratch.cleanup());

  function plantedRan(): string[] {
    return readdirSync(markers);
  }

  it('moat sync, diff and ls run nothing planted and read no host file through a link', async () => {
    const sync = await moat.sync('attack');
    expect(sync.commits).toBe(1);
    const diff = await moat.diff('attack', { patch: true, stat: true });
    expect(diff.patch).not.toContain(SECRET);
    expect(diff.patch).not.toContain('root:x:0:0');
    const link = diff.files.find((f) => f.path === 'stolen-key')!;
    expect(link.linkTarget).toBe(secretFile);
    expect(link.flags).toContain('symlink-outside');
    expect(diff.flagged.map((f) => f.path)).toEqual(expect.arrayContaining(['.gitattributes', '.gitmodules', 'passwd-link', 'user-git']));
    expect(diff.files.map((f) => f.path)).toEqual(expect.arrayContaining(['new\nline', 'esc\u001b[31mred', 'legit.txt']));
    await moat.ls();
    expect(plantedRan()).toEqual([]);
  }, 180_000);

  it("the user's repository config, hooks and other refs are untouched", () => {
    expect(readFileSync(join(scratch.repo, '.git', 'config'), 'utf8')).toBe(userGitBefore.config);
    expect(readdirSync(join(scratch.repo, '.git', 'hooks')).sort()).toEqual(userGitBefore.hooks);
    // The snapshot of uncommitted work is best effort (the planted filter breaks `git add`
    // inside); whether or not it exists, no other ref of the user's may have changed.
    const refs = gitIn(scratch.repo, 'for-each-ref', '--format=%(refname)')
      .split('\n')
      .filter((ref) => ref !== 'refs/moat/wip/attack');
    expect(refs.sort()).toEqual(['refs/heads/main', 'refs/heads/moat/attack']);
  });

  it('merge brings the legit commit home (after --yes for flagged files) and runs nothing', async () => {
    await expect(moat.merge('attack')).rejects.toMatchObject({ code: 'E_CONFIRM' });
    const result = await moat.merge('attack', { yes: true });
    expect(result.commits).toBe(1);
    expect(readFileSync(join(scratch.repo, 'legit.txt'), 'utf8')).toBe('legit\n');
    expect(plantedRan()).toEqual([]);
  });

  it('apply lays the work on the checkout and runs nothing planted', async () => {
    // From before the merge: git's own fsck now (rightly) refuses the merged .gitmodules in new clones.
    const other = await moat.up({ task: 'apply-probe', base: 'HEAD^1' });
    await moat.exec(
      'apply-probe',
      [
        'sh',
        '-c',
        `echo applied > applied.txt && git config core.fsmonitor "touch ${join(markers, 'apply-fsmonitor')}" && printf '#!/bin/sh\\ntouch ${join(markers, 'apply-hook')}\\n' > .git/hooks/post-applypatch && chmod +x .git/hooks/post-applypatch`,
      ],
      captureIO().io,
    );
    const applied = await moat.apply('apply-probe', { yes: true });
    expect(applied.files).toBeGreaterThan(0);
    expect(readFileSync(join(scratch.repo, 'applied.txt'), 'utf8')).toBe('applied\n');
    sh('git', ['checkout', '--', '.'], scratch.repo);
    sh('git', ['clean', '-fdq'], scratch.repo);
    await moat.rm(other.name, { force: true });
    expect(plantedRan()).toEqual([]);
  });

  it("the user's own git status, log -p, diff and checkout run nothing planted", () => {
    for (const args of [
      ['status'],
      ['log', '-p', '-3'],
      ['diff', 'HEAD~1'],
      ['checkout', '-q', 'HEAD~1'],
      ['checkout', '-q', 'main'],
      ['submodule', 'status'],
    ]) {
      try {
        sh('git', args, scratch.repo);
      } catch {
        // A command may fail on the planted .gitmodules; what matters is that nothing ran.
      }
    }
    expect(plantedRan()).toEqual([]);
    expect(readFileSync(secretFile, 'utf8')).toBe(`${SECRET}\n`);
  });

  it('down and rm run nothing planted, remove no host file through links, and leave the merged work', async () => {
    await moat.down('attack');
    await moat.rm('attack', { force: true });
    await moat.gc();
    expect(plantedRan()).toEqual([]);
    expect(existsSync(secretFile)).toBe(true);
    expect(existsSync('/etc/passwd')).toBe(true);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'HEAD^2')).toBe('legit work plus plants');
  });
});
