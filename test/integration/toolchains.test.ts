import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TOOLCHAIN_INFO, type Toolchain } from '../../src/domain/toolchain.js';
import { gitIn, MOAT_BIN, Scratch } from '../helpers/fixtures.js';

/**
 * A sample project per stack, with no Dockerfile: `moat run` picks the toolchain from the
 * repository's files and runs the project's own tests inside, with no network. Each sample is also
 * a small command the user installs for themselves (npm -g, pip, go install, cargo install): the
 * root filesystem is read-only, so that works only if the toolchain's writable places are right.
 */
interface Sample {
  toolchain: Toolchain;
  marker: string;
  files: Record<string, string>;
  test: string[];
  passed: RegExp;
  /** The test file and how to break it, and the status the test command then exits with. */
  breakIt: [file: string, from: string, to: string, status: number];
  install: string;
  version: string[];
  /** What the version command prints for the version `moat templates` shows. */
  versionLine: RegExp;
}

const escaped = (text: string) => text.replaceAll('.', '\\.');

const samples: Sample[] = [
  {
    toolchain: 'node',
    marker: 'package.json',
    files: {
      'package.json': JSON.stringify({ name: 'sample', version: '1.0.0', bin: { 'sample-hello': 'hello.js' }, scripts: { test: 'node --test' } }, null, 2),
      'hello.js': '#!/usr/bin/env node\nconst { add } = require("./add.js");\nconsole.log(`hello from node ${add(2, 3)}`);\n',
      'add.js': 'exports.add = (a, b) => a + b;\n',
      'test/add.test.js':
        'const test = require("node:test");\nconst assert = require("node:assert");\nconst { add } = require("../add.js");\ntest("adds", () => assert.strictEqual(add(2, 3), 5));\n',
    },
    test: ['npm', 'test'],
    passed: /# pass 1\n# fail 0/,
    breakIt: ['test/add.test.js', 'add(2, 3), 5', 'add(2, 3), 6', 1],
    install: 'npm install -g --no-audit --no-fund --loglevel=error . && sample-hello',
    version: ['node', '--version'],
    versionLine: new RegExp(`^v${escaped(TOOLCHAIN_INFO.node.version)}$`),
  },
  {
    toolchain: 'python',
    marker: 'pyproject.toml',
    files: {
      'pyproject.toml':
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "sample"\nversion = "1.0.0"\n\n[project.scripts]\nsample-hello = "sample:main"\n\n[tool.setuptools]\npy-modules = ["sample"]\n',
      'sample.py': 'def add(a, b):\n    return a + b\n\n\ndef main():\n    print(f"hello from python {add(2, 3)}")\n',
      'test_sample.py':
        'import unittest\n\nfrom sample import add\n\n\nclass AddTest(unittest.TestCase):\n    def test_adds(self):\n        self.assertEqual(add(2, 3), 5)\n',
    },
    test: ['python', '-m', 'pytest', '-q'],
    passed: /1 passed/,
    breakIt: ['test_sample.py', 'add(2, 3), 5', 'add(2, 3), 6', 1],
    // Offline: setuptools and wheel come with Debian's pip, so no isolated build environment is fetched.
    install: 'pip install -q --no-index --no-build-isolation . && sample-hello',
    version: ['python', '--version'],
    versionLine: new RegExp(`^Python ${escaped(TOOLCHAIN_INFO.python.version)}\\.\\d+$`),
  },
  {
    toolchain: 'go',
    marker: 'go.mod',
    files: {
      'go.mod': 'module example.com/sample-hello\n\ngo 1.22\n',
      'main.go': 'package main\n\nimport "fmt"\n\nfunc add(a, b int) int { return a + b }\n\nfunc main() { fmt.Printf("hello from go %d\\n", add(2, 3)) }\n',
      'main_test.go':
        'package main\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n\tif got := add(2, 3); got != 5 {\n\t\tt.Fatalf("add(2, 3) = %d", got)\n\t}\n}\n',
    },
    test: ['go', 'test', './...'],
    passed: /^ok\s+example\.com\/sample-hello/m,
    breakIt: ['main_test.go', 'got != 5', 'got != 6', 1],
    install: 'go install . && sample-hello',
    version: ['go', 'version'],
    versionLine: new RegExp(`^go version go${escaped(TOOLCHAIN_INFO.go.version)}\\.\\d+ linux/amd64$`),
  },
  {
    toolchain: 'rust',
    marker: 'Cargo.toml',
    files: {
      'Cargo.toml': '[package]\nname = "sample-hello"\nversion = "1.0.0"\nedition = "2021"\n',
      'src/main.rs':
        'fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\nfn main() {\n    println!("hello from rust {}", add(2, 3));\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 3), 5);\n    }\n}\n',
    },
    test: ['cargo', 'test', '--offline'],
    passed: /test result: ok\. 1 passed/,
    breakIt: ['src/main.rs', 'add(2, 3), 5', 'add(2, 3), 6', 101],
    install: 'cargo install -q --offline --path . && sample-hello',
    version: ['rustc', '--version'],
    versionLine: new RegExp(`^rustc ${escaped(TOOLCHAIN_INFO.rust.version)}\\.\\d+ `),
  },
];

/** The real binary, as a user runs it, without blocking the test process (builds take minutes). */
function moat(scratch: Scratch, args: string[]): Promise<{ code: number | null; out: string; err: string; toString(): string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MOAT_BIN, ...args], { cwd: scratch.repo, env: scratch.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err, toString: () => `exit ${code}: ${(out + err).slice(-3000)}` }));
  });
}

function commit(scratch: Scratch, files: Record<string, string>, message: string): void {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(scratch.repo, path)), { recursive: true });
    writeFileSync(join(scratch.repo, path), text);
  }
  gitIn(scratch.repo, 'add', '-A');
  gitIn(scratch.repo, 'commit', '-qm', message);
}

describe.each(samples)('a $toolchain project with no Dockerfile', (sample) => {
  const scratch = new Scratch({ commit: false });
  afterAll(() => scratch.cleanup());

  it(`moat run -- ${sample.test.join(' ')}: the toolchain is detected and the tests pass offline; a failing test's status comes back`, async () => {
    commit(scratch, sample.files, 'sample project');
    const run = await moat(scratch, ['run', '--network', 'none', '--', ...sample.test]);
    expect(run.code, String(run)).toBe(0);
    expect(run.err).toContain(`template ${sample.toolchain} (${sample.toolchain} ${TOOLCHAIN_INFO[sample.toolchain].version}): detected from ${sample.marker}`);
    expect(run.out + run.err).toMatch(sample.passed);

    const [file, from, to, status] = sample.breakIt;
    commit(scratch, { [file]: sample.files[file]!.replace(from, to) }, 'break the test');
    const failed = await moat(scratch, ['run', '--network', 'none', '--', ...sample.test]);
    expect(failed.code, String(failed)).toBe(status);
    expect(failed.out + failed.err).not.toMatch(sample.passed);
  }, 900_000);

  it('installs for the user land in the writable home and on PATH; the version is the one moat templates shows', async () => {
    const install = await moat(scratch, ['run', '--network', 'none', '--', 'sh', '-c', sample.install]);
    expect(install.code, String(install)).toBe(0);
    expect(install.out.trim().split('\n').at(-1)).toBe(`hello from ${sample.toolchain} 5`);
    const version = await moat(scratch, ['run', '--network', 'none', '--', ...sample.version]);
    expect(version.code, String(version)).toBe(0);
    expect(version.out.trim()).toMatch(sample.versionLine);
  }, 900_000);
});

describe('several stacks and an agent template', () => {
  const scratch = new Scratch({ commit: false });
  afterAll(() => scratch.cleanup());

  it('an agent template gets the detected toolchains it lacks, in one image, and says so (also in --json)', async () => {
    commit(scratch, { 'package.json': '{ "name": "both", "private": true }\n', 'requirements.txt': '\n' }, 'node and python');
    const up = await moat(scratch, ['up', '--task', 'layered', '-t', 'codex', '--network', 'none', '--json']);
    expect(up.code, String(up)).toBe(0);
    expect(up.err).toContain('template codex+python (node 22.23.3, python 3.11): from -t; toolchains added for requirements.txt');
    expect(JSON.parse(up.out)).toMatchObject({
      template: 'codex+python',
      templateChoice: { source: 'flag', toolchains: ['node', 'python'], markers: ['requirements.txt'] },
      image: expect.stringMatching(/^moat-codex_python:/),
    });
    const inside = await moat(scratch, ['exec', 'layered', '--', 'sh', '-c', 'codex --version && node --version && python --version']);
    expect(inside.code, String(inside)).toBe(0);
    expect(inside.out).toMatch(/codex-cli \d[\s\S]*v22\.[\s\S]*Python 3\./);
    // A stated toolchain is taken as stated: nothing detected is added.
    const stated = await moat(scratch, ['up', '--task', 'stated', '-t', 'python', '--network', 'none', '--json']);
    expect(stated.code, String(stated)).toBe(0);
    expect(JSON.parse(stated.out)).toMatchObject({ template: 'python', templateChoice: { source: 'flag', toolchains: ['python'] } });
    const noNode = await moat(scratch, ['exec', 'stated', '--', 'sh', '-c', 'command -v node || echo no node']);
    expect(noNode.out.trim()).toBe('no node');
  }, 900_000);

  it('toolchains are added only to templates built by the shared recipe: one line, nothing made', async () => {
    const unknown = await moat(scratch, ['up', '--task', 'nope', '-t', 'shell+java']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/unknown template "shell\+java"/);
    const dir = join(scratch.root, 'my-templates');
    mkdirSync(join(dir, 'mine'), { recursive: true });
    writeFileSync(join(dir, 'mine', 'Dockerfile'), 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n');
    scratch.writeConfig(`templates: [${dir}]\n`);
    const own = await moat(scratch, ['up', '--task', 'nope', '-t', 'mine+python']);
    expect(own.code).toBe(2);
    expect(own.err).toMatch(/template mine takes no toolchains \(mine\+python\)/);
    const listed = await moat(scratch, ['ls', '--json']);
    expect(JSON.parse(listed.out).map((t: { name: string }) => t.name)).not.toContain('nope');
  });

  it('moat templates --json says what each template carries, with versions', async () => {
    const listed = await moat(scratch, ['templates', '--json']);
    expect(listed.code, String(listed)).toBe(0);
    const byName = new Map((JSON.parse(listed.out) as Array<{ name: string; contains: unknown }>).map((t) => [t.name, t.contains]));
    expect(byName.get('python')).toEqual({
      toolchains: [{ name: 'python', version: TOOLCHAIN_INFO.python.version, from: TOOLCHAIN_INFO.python.from }],
      detect: false,
      summary: `python ${TOOLCHAIN_INFO.python.version}`,
    });
    expect(byName.get('claude')).toMatchObject({ detect: true, summary: `node ${TOOLCHAIN_INFO.node.version} + detected` });
    expect(byName.get('mine')).toMatchObject({ toolchains: [], summary: 'its own image' });
  });
});
