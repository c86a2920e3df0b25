import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { backendPathDirs, packageJsonChanged } from '../../src/domain/review-content.js';
import { FLAG_TEXT, flagsFor, foldPath, insideAny, linkLeavesRepo, needsContent, renderRulesTable, type FileContent } from '../../src/domain/review-flags.js';
import { REVIEW_RULES, type ReviewRuleId } from '../../src/domain/review-rules.js';

/** A changed path, with old and new text for rules that look at content. */
type Change = string | { path: string; content: FileContent };

const added = (path: string, mode = '100644') => ({ path, status: 'A', oldMode: '000000', newMode: mode });
const modified = (path: string) => ({ path, status: 'M', oldMode: '100644', newMode: '100644' });
function flagsOf(change: Change) {
  return typeof change === 'string' ? flagsFor(added(change)) : flagsFor(modified(change.path), change.content);
}

const PYPROJECT = [
  '[project]',
  'name = "demo"',
  'version = "1.0"',
  '',
  '[build-system]',
  'requires = ["setuptools"]',
  'build-backend = "setuptools.build_meta"',
  '',
  '[tool.ruff]',
  'line-length = 100',
  '',
].join('\n');
const CARGO = '[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nserde = "1"\n';
const GO_MOD = 'module example.com/demo\n\ngo 1.22\n\nrequire golang.org/x/text v0.14.0\n';
const PACKAGE = JSON.stringify({ name: 'demo', version: '1.0.0', scripts: { test: 'vitest' } });

/**
 * One row per rule: a change that must be flagged with the rule, and a near miss that must not.
 * Typed by rule id, so a rule without a row does not compile.
 */
const ROWS: Record<Exclude<ReviewRuleId, 'python-in-tree-backend'>, { hit: Change; miss: Change }> = {
  'python-setup': { hit: 'pkg/Setup.py', miss: 'docs/setup.py.txt' },
  'python-pyproject': {
    hit: { path: 'pyproject.toml', content: { old: PYPROJECT, new: PYPROJECT.replace('"setuptools.build_meta"', '"backend"\nbackend-path = ["_build"]') } },
    miss: { path: 'pyproject.toml', content: { old: PYPROJECT, new: PYPROJECT.replace('"1.0"', '"1.1"').replace('= 100', '= 120') } },
  },
  'python-build-hooks': { hit: 'hatch_build.py', miss: 'src/hatch_build_utils.py' },
  'python-tox-nox': { hit: 'tox.ini', miss: 'docs/tox.ini.md' },
  'python-pytest': { hit: 'tests/unit/conftest.py', miss: 'tests/test_conftest.py' },
  'python-startup': { hit: 'lib/evil.pth', miss: 'docs/sitecustomize.md' },
  'python-requirements': { hit: 'requirements-dev.txt', miss: 'docs/requirements.md' },
  'js-package-json': {
    hit: { path: 'packages/a/package.json', content: { old: PACKAGE, new: PACKAGE.replace('"test":"vitest"', '"test":"vitest","postinstall":"node x.js"') } },
    miss: { path: 'package.json', content: { old: PACKAGE, new: JSON.stringify({ ...JSON.parse(PACKAGE), version: '1.0.1', description: 'a demo' }) } },
  },
  'js-package-yaml': { hit: 'package.yaml', miss: 'docs/package.yaml.md' },
  'js-npm-config': { hit: '.npmrc', miss: 'npmrc.md' },
  'js-yarn': { hit: '.yarnrc.yml', miss: 'yarn.md' },
  'js-pnpm': { hit: '.pnpmfile.cjs', miss: 'pnpmfile.md' },
  'js-bun': { hit: 'bunfig.toml', miss: 'bun.md' },
  'js-node-gyp': { hit: 'binding.gyp', miss: 'binding.c' },
  'js-node-modules': { hit: 'node_modules/.bin/tsc', miss: 'src/node_modules.ts' },
  'js-tool-config': { hit: 'vite.config.ts', miss: 'src/config.ts' },
  'rust-build-script': { hit: 'crates/x/build.rs', miss: 'src/build.rs.bak' },
  'rust-cargo-toml': {
    hit: { path: 'Cargo.toml', content: { old: CARGO, new: CARGO.replace('edition = "2021"', 'edition = "2021"\nbuild = "gen.rs"') } },
    miss: { path: 'Cargo.toml', content: { old: CARGO, new: CARGO.replace('0.1.0', '0.2.0') } },
  },
  'rust-cargo-config': { hit: '.cargo/config.toml', miss: 'cargo/config.toml' },
  'rust-toolchain': { hit: 'rust-toolchain.toml', miss: 'docs/rust-toolchain.md' },
  'go-generate': {
    hit: { path: 'cmd/x/main.go', content: { old: 'package main\n', new: 'package main\n\n//go:generate sh -c "cat ~/.ssh/id_ed25519"\n' } },
    miss: { path: 'cmd/x/main.go', content: { old: 'package main\n', new: 'package main\n\n// go generate is not run here\nfunc main() {}\n' } },
  },
  'go-mod': {
    hit: { path: 'go.mod', content: { old: GO_MOD, new: `${GO_MOD}\nreplace golang.org/x/text => ./vendor/text\n` } },
    miss: { path: 'go.mod', content: { old: GO_MOD, new: GO_MOD.replace('v0.14.0', 'v0.15.0') } },
  },
  'go-work': { hit: 'go.work', miss: 'go.work.sum' },
  'c-make': { hit: 'sub/GNUmakefile', miss: 'notes/Makefile.txt' },
  'c-cmake': { hit: 'CMakeLists.txt', miss: 'CMakeLists.txt.orig' },
  'c-meson': { hit: 'meson.build', miss: 'meson.md' },
  'c-autotools': { hit: 'configure.ac', miss: 'configure.md' },
  'c-other-builds': { hit: 'SConstruct', miss: 'sconstruct.md' },
  'jvm-gradle': { hit: 'app/build.gradle.kts', miss: 'gradle.md' },
  'jvm-gradle-wrapper': { hit: 'gradle/wrapper/gradle-wrapper.jar', miss: 'gradle/wrapper.md' },
  'jvm-maven': { hit: '.mvn/extensions.xml', miss: 'docs/pom.md' },
  'jvm-sbt': { hit: 'build.sbt', miss: 'build.sbt.txt' },
  bazel: { hit: 'tools/bazel', miss: 'tools/bazel.md' },
  ruby: { hit: 'Gemfile', miss: 'Gemfile.md' },
  lockfile: { hit: 'package-lock.json', miss: 'package-lock.md' },
  docker: { hit: 'docker-compose.override.yml', miss: 'docs/docker.md' },
  devcontainer: { hit: '.devcontainer/devcontainer.json', miss: 'devcontainer.md' },
  'git-attributes': { hit: 'sub/.gitattributes', miss: '.gitattributes.md' },
  'git-modules': { hit: '.gitmodules', miss: 'gitmodules.txt' },
  'git-lfs': { hit: '.lfsconfig', miss: 'lfsconfig.md' },
  'git-config': { hit: 'tools/.gitconfig', miss: 'gitconfig.md' },
  editor: { hit: '.vscode/tasks.json', miss: 'vscode/tasks.json' },
  environment: { hit: '.envrc', miss: 'envrc.md' },
  'task-runner': { hit: 'Justfile', miss: 'justfile.md' },
  'git-hooks': { hit: '.husky/pre-commit', miss: 'husky/pre-commit' },
  ci: { hit: '.github/workflows/ci.yml', miss: '.github/ISSUE_TEMPLATE/bug.md' },
  moat: { hit: '.moat/templates/x/template.yaml', miss: 'moat.md' },
};

describe('review rules: one row per rule', () => {
  it.each(Object.entries(ROWS))('%s: flags the file with its reason, not the near miss', (id, { hit, miss }) => {
    expect(flagsOf(hit)).toContain(id);
    expect(FLAG_TEXT[id as ReviewRuleId]).toMatch(/^[\w /+-]+: \S/);
    expect(flagsOf(miss)).not.toContain(id);
  });

  it('python-in-tree-backend: files under a backend-path folder, not beside it', () => {
    const pyproject = '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["_build", "./tools/../hooks"]\n';
    const dirs = backendPathDirs('pkg', pyproject);
    expect(dirs).toEqual(['pkg/_build', 'pkg/hooks']);
    expect(insideAny('pkg/_build/backend.py', dirs)).toBe(true);
    expect(insideAny('PKG/_Build/backend.py', dirs)).toBe(true);
    expect(insideAny('pkg/_build_notes/backend.py', dirs)).toBe(false);
    expect(insideAny('pkg/backend.py', dirs)).toBe(false);
    expect(FLAG_TEXT['python-in-tree-backend']).toMatch(/PEP 517 backend/);
  });
});

describe('paths are compared as a case-insensitive, normalising file system would', () => {
  it.each([
    ['MAKEFILE', 'c-make'],
    ['src/makefile', 'c-make'],
    ['Makefile.', 'c-make'],
    ['Make\u200bfile', 'c-make'],
    ['\uff2d\uff41\uff4b\uff45\uff46\uff49\uff4c\uff45', 'c-make'],
    ['\u017fetup.py', 'python-setup'],
    ['a/b/c/CONFTEST.PY', 'python-pytest'],
    ['.ENVRC', 'environment'],
    ['.Github/Workflows/x.yml', 'ci'],
    ['Dockerfile.dev', 'docker'],
    ['sub/pkg/.cargo/CONFIG', 'rust-cargo-config'],
  ])('%s is flagged as %s', (path, id) => {
    expect(flagsOf(path)).toContain(id);
  });

  it('folds case, compatibility forms, marks, invisible characters and trailing dots', () => {
    expect(foldPath('A/\u212a\u0131\u0301x. /Se\u0301tup.PY ')).toBe('a/kix/setup.py');
  });

  it('ordinary source files carry no flag', () => {
    for (const path of ['src/index.ts', 'README.md', 'lib/module.py', 'docs/build.md', 'src/makefile_parser.c', 'crates/x/src/lib.rs']) {
      expect(flagsOf(path), path).toEqual([]);
    }
  });

  it('a deletion carries no flag', () => {
    expect(flagsFor({ path: '.envrc', status: 'D', oldMode: '100644', newMode: '000000' })).toEqual([]);
  });

  it('mode changes: a new executable, a link, a submodule', () => {
    expect(flagsFor(added('run.sh', '100755'))).toContain('executable');
    expect(flagsFor({ path: 'run.sh', status: 'M', oldMode: '100755', newMode: '100755' })).not.toContain('executable');
    expect(flagsFor(added('link', '120000'))).toContain('symlink');
    expect(flagsFor(added('vendor/x', '160000'))).toContain('submodule');
  });
});

describe('content checks fail closed', () => {
  it('a content rule without readable content flags on the path alone', () => {
    expect(needsContent(modified('package.json'))).toBe(true);
    expect(needsContent(modified('README.md'))).toBe(false);
    expect(flagsFor(modified('package.json'))).toContain('js-package-json');
  });

  it('package.json: every field that runs or installs code counts; unparseable text counts', () => {
    const fields = [
      'bin',
      'gypfile',
      'workspaces',
      'dependencies',
      'devDependencies',
      'optionalDependencies',
      'overrides',
      'packageManager',
      'eslintConfig',
      'new',
    ];
    for (const field of fields) {
      expect(packageJsonChanged(PACKAGE, JSON.stringify({ ...JSON.parse(PACKAGE), [field]: { x: '1' } })), field).toBe(true);
    }
    expect(packageJsonChanged(PACKAGE, '{"scripts": ')).toBe(true);
    expect(packageJsonChanged(undefined, JSON.stringify({ name: 'x', version: '1.0.0' }))).toBe(false);
    expect(packageJsonChanged(undefined, JSON.stringify({ name: 'x', scripts: { prepare: 'sh x' } }))).toBe(true);
  });

  const pyproject = (next: string) => flagsOf({ path: 'pyproject.toml', content: { old: PYPROJECT, new: next } });
  it.each([
    ['a dotted key at the root', `build-system.backend-path = ["x"]\n${PYPROJECT}`],
    ['a quoted header', `${PYPROJECT}\n[ "tool" . "setuptools" ]\ncmdclass = { build_py = "x:Evil" }\n`],
    ['a header this splitter cannot read', `${PYPROJECT}\n[tool."a]b"]\nx = 1\n`],
    ['a multi-line string (it could hide a header)', PYPROJECT.replace('line-length = 100', 'line-length = 100\nx = """\n[tool.black]\n"""')],
    ['an inline table over lines (TOML 1.1)', PYPROJECT.replace('version = "1.0"', 'version = "1.0"\nurls = {\nversion = "2" }')],
    ['hatch build hooks', `${PYPROJECT}\n[tool.hatch.build.hooks.custom]\npath = "hooks.py"\n`],
    ['pytest plugins', `${PYPROJECT}\n[tool.pytest.ini_options]\naddopts = "-p evil"\n`],
    ['project dependencies', PYPROJECT.replace('version = "1.0"', 'version = "1.0"\ndependencies = ["evil"]')],
    ['entry points', `${PYPROJECT}\n[project.entry-points.pytest11]\nevil = "evil"\n`],
    ['a linter table moved under a tool that loads plugins', PYPROJECT.replace('[tool.ruff]', '[tool.mypy]')],
  ])('pyproject.toml: %s is flagged', (_what, next) => {
    expect(pyproject(next)).toContain('python-pyproject');
  });

  it('pyproject.toml: comments and harmless tables only are not flagged; a new file with [project] is', () => {
    expect(pyproject(`# a comment\n${PYPROJECT}\n[tool.black]\nline-length = 99\n`)).toEqual([]);
    expect(flagsOf({ path: 'pyproject.toml', content: { new: '[tool.ruff]\nline-length = 1\n' } })).toEqual([]);
    expect(flagsOf({ path: 'pyproject.toml', content: { new: PYPROJECT } })).toContain('python-pyproject');
  });

  it('Cargo.toml: dependencies, proc macros and patches count', () => {
    for (const next of [`${CARGO}rand = "0.8"\n`, `${CARGO}\n[lib]\nproc-macro = true\n`, `${CARGO}\n[patch.crates-io]\nserde = { path = "../evil" }\n`]) {
      expect(flagsOf({ path: 'Cargo.toml', content: { old: CARGO, new: next } })).toContain('rust-cargo-toml');
    }
  });

  it('go: an indented or repeated generate line counts; a removed one does not', () => {
    const line = '//go:generate touch /tmp/x\n';
    const go = (old: string, next: string) => flagsOf({ path: 'x.go', content: { old, new: next } });
    expect(go('package x\n', `package x\n  ${line}`)).toContain('go-generate');
    expect(go(`package x\n${line}`, `package x\n${line}${line}`)).toContain('go-generate');
    expect(go(`package x\n${line}`, 'package x\n')).toEqual([]);
  });

  it('go.mod: go, toolchain, tool and replace lines count', () => {
    expect(flagsOf({ path: 'go.mod', content: { old: GO_MOD, new: GO_MOD.replace('go 1.22', 'go 1.23') } })).toContain('go-mod');
    for (const extra of ['toolchain go1.23.1\n', 'tool (\n\texample.com/evil\n)\n', 'replace (\n\tgolang.org/x/text => ../text\n)\n']) {
      expect(flagsOf({ path: 'go.mod', content: { old: GO_MOD, new: `${GO_MOD}${extra}` } })).toContain('go-mod');
    }
  });
});

describe('links', () => {
  it('tells links that leave the repository', () => {
    expect(linkLeavesRepo('a', '/etc/passwd')).toBe(true);
    expect(linkLeavesRepo('a/b', '../../x')).toBe(true);
    expect(linkLeavesRepo('a/b', '../x')).toBe(false);
    expect(linkLeavesRepo('a', 'b/../../c')).toBe(true);
  });
});

describe('docs/security.md', () => {
  const doc = new URL('../../docs/security.md', import.meta.url);
  const BEGIN =
    '<!-- review-rules:begin: generated from src/domain/review-rules.ts; MOAT_WRITE_DOCS=1 npx vitest run test/unit/review-flags.test.ts rewrites it -->';
  const END = '<!-- review-rules:end -->';

  it('shows the rule table exactly (every rule is a row)', () => {
    const text = readFileSync(doc, 'utf8');
    const start = text.indexOf(BEGIN);
    const end = text.indexOf(END);
    const table = renderRulesTable();
    if (process.env.MOAT_WRITE_DOCS === '1' && start >= 0 && end > start) {
      writeFileSync(doc, `${text.slice(0, start + BEGIN.length)}\n${table}\n${text.slice(end)}`);
      return;
    }
    expect(start, 'the markers of the generated table are in docs/security.md').toBeGreaterThanOrEqual(0);
    expect(text.slice(start + BEGIN.length, end).trim()).toBe(table);
    for (const rule of REVIEW_RULES) expect(table).toContain(`\`${rule.id}\``);
  });
});
