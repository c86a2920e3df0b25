import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/gateway/audit.js';
import { TOOLCHAIN_INFO, type Toolchain } from '../../src/domain/toolchain.js';
import { DnsStub } from '../helpers/dns-stub.js';
import { gitIn, makeTestCa, MOAT_BIN, Scratch } from '../helpers/fixtures.js';
import { hostInternalAddress, LocalRegistry, serveCargo, serveGo, serveNpm, servePython } from '../helpers/registries.js';

/**
 * Dependencies installed through an allowed registry, per stack, as a company with its own
 * registry (or a TLS-inspected network) runs them: a registry of the test's on this host, under a
 * DNS name only the gateway's DNS stub knows, over HTTPS with a certificate of the test's CA, in a
 * non-public range. The user's config admits that range (egress.allowAddresses), trusts that CA
 * (egress.trustCa) and sets the variables each tool reads (env); `--allow` names the registry's
 * host and nothing else. `moat run` picks the template from the project's files and runs the
 * project's own install and test commands. Without `--allow` the same run fails on moat's refusal,
 * which the tool's own error names (cargo's shows only the 403) and moat-why explains,
 * and nothing reaches the registry.
 */
interface Stack {
  toolchain: Toolchain;
  marker: string;
  host: string;
  /** Puts the package on the registry; returns the project's files and the user's env for that tool. */
  project(registry: LocalRegistry): { files: Record<string, string>; env?: Record<string, string> };
  command: string;
  passed: RegExp;
  /** Requests the install must have made. */
  fetched: string[];
  /** What the tool itself prints when moat refuses the registry (curl, under cargo, shows only the status). */
  refusal: (host: string) => string;
}

const GREETING = 'hello from the registry';

const stacks: Stack[] = [
  {
    toolchain: 'node',
    marker: 'package.json',
    host: 'npm.registry.test',
    project: (registry) => {
      const { lockEntry } = serveNpm(registry, 'greet', '1.0.0', { 'index.js': `exports.greet = () => ${JSON.stringify(GREETING)};\n` });
      const root = { name: 'app', version: '1.0.0', dependencies: { greet: '1.0.0' } };
      return {
        files: {
          'package.json': JSON.stringify({ ...root, private: true, scripts: { test: 'node --test' } }, null, 2),
          'package-lock.json': JSON.stringify(
            { name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': root, 'node_modules/greet': lockEntry } },
            null,
            2,
          ),
          // A private registry has no audit endpoint: the project turns audits off, as such projects do.
          '.npmrc': `registry=${registry.url}/\naudit=false\nfund=false\n`,
          '.gitignore': 'node_modules/\n',
          'test/greet.test.js': `const test = require("node:test");\nconst assert = require("node:assert");\nconst { greet } = require("greet");\ntest("greets", () => assert.strictEqual(greet(), ${JSON.stringify(GREETING)}));\n`,
        },
      };
    },
    command: 'npm ci && npm test',
    passed: /# pass 1\n# fail 0/,
    fetched: ['GET /greet/-/greet-1.0.0.tgz'],
    refusal: (host) => `npm error 403 403 moat refused: not in allowlist: ${host} - GET https://${host}:`,
  },
  {
    toolchain: 'python',
    marker: 'requirements.txt',
    host: 'pypi.registry.test',
    project: (registry) => {
      servePython(registry, 'greet', '1.0.0', { 'greet/__init__.py': `def greet():\n    return ${JSON.stringify(GREETING)}\n` });
      return {
        files: {
          'requirements.txt': 'greet==1.0.0\n',
          'test_app.py': `from greet import greet\n\n\ndef test_greets():\n    assert greet() == ${JSON.stringify(GREETING)}\n`,
        },
        env: { PIP_INDEX_URL: `${registry.url}/simple/`, PIP_DISABLE_PIP_VERSION_CHECK: '1' },
      };
    },
    command: 'pip install -r requirements.txt && python -m pytest -q',
    passed: /1 passed/,
    fetched: ['GET /simple/greet/', 'GET /files/greet-1.0.0-py3-none-any.whl'],
    refusal: (host) => `Tunnel connection failed: 403 moat refused: not in allowlist: ${host}`,
  },
  {
    toolchain: 'go',
    marker: 'go.mod',
    host: 'goproxy.registry.test',
    project: (registry) => {
      const module = 'git.corp.test/greet';
      const { goSum } = serveGo(registry, module, 'v1.0.0', {
        'go.mod': `module ${module}\n\ngo 1.22\n`,
        'greet.go': `package greet\n\nfunc Greet() string { return ${JSON.stringify(GREETING)} }\n`,
      });
      return {
        files: {
          'go.mod': `module example.com/app\n\ngo 1.22\n\nrequire ${module} v1.0.0\n`,
          'go.sum': goSum,
          'app.go': `package app\n\nimport "${module}"\n\nfunc Message() string { return greet.Greet() }\n`,
          'app_test.go': `package app\n\nimport "testing"\n\nfunc TestMessage(t *testing.T) {\n\tif got := Message(); got != ${JSON.stringify(GREETING)} {\n\t\tt.Fatalf("Message() = %q", got)\n\t}\n}\n`,
        },
        // A private proxy's user: modules from it, their hashes from go.sum, never from the public checksum database.
        env: { GOPROXY: registry.url, GONOSUMDB: 'git.corp.test', GOFLAGS: '-mod=readonly' },
      };
    },
    command: 'go test ./...',
    passed: /^ok\s+example\.com\/app/m,
    fetched: ['GET /git.corp.test/greet/@v/v1.0.0.mod', 'GET /git.corp.test/greet/@v/v1.0.0.zip'],
    refusal: (host) => `: moat refused: not in allowlist: ${host}`,
  },
  {
    toolchain: 'rust',
    marker: 'Cargo.toml',
    host: 'crates.registry.test',
    project: (registry) => {
      serveCargo(registry, 'greet', '1.0.0', { 'src/lib.rs': `pub fn greet() -> &'static str {\n    ${JSON.stringify(GREETING)}\n}\n` });
      return {
        files: {
          'Cargo.toml': '[package]\nname = "app"\nversion = "1.0.0"\nedition = "2021"\n\n[dependencies]\ngreet = "1.0.0"\n',
          // Source replacement: crates.io's crates come from the company's sparse registry.
          '.cargo/config.toml': `[source.crates-io]\nreplace-with = "corp"\n\n[source.corp]\nregistry = "sparse+${registry.url}/index/"\n`,
          '.gitignore': 'target/\n',
          'src/lib.rs': `pub fn message() -> &'static str {\n    greet::greet()\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn greets() {\n        assert_eq!(super::message(), ${JSON.stringify(GREETING)});\n    }\n}\n`,
        },
      };
    },
    command: 'cargo test',
    passed: /test result: ok\. 1 passed/,
    fetched: ['GET /index/config.json', 'GET /index/gr/ee/greet', 'GET /api/v1/crates/greet/1.0.0/download'],
    refusal: () => 'CONNECT tunnel failed, response 403',
  },
];

/** The real binary, as a user runs it, without blocking the test process. */
function moat(scratch: Scratch, env: Record<string, string>, args: string[]): Promise<{ code: number | null; out: string; toString(): string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MOAT_BIN, ...args], { cwd: scratch.repo, env: scratch.env(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, toString: () => `exit ${code}: ${out.slice(-4000)}` }));
  });
}

async function audit(scratch: Scratch, env: Record<string, string>, task: string): Promise<AuditRecord[]> {
  const listed = await moat(scratch, env, ['egress', task, '--json']);
  expect(listed.code, String(listed)).toBe(0);
  return listed.out
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as AuditRecord);
}

const { address } = hostInternalAddress();

describe.each(stacks)('a $toolchain project installing from a private registry', (stack) => {
  const scratch = new Scratch({ commit: false });
  const dns = new DnsStub({ [stack.host]: address });
  let registry: LocalRegistry;
  let env: Record<string, string>;

  beforeAll(async () => {
    await dns.start();
    const caDir = join(scratch.root, 'registry-ca');
    mkdirSync(caDir);
    const tls = makeTestCa(caDir, stack.host);
    registry = new LocalRegistry(stack.host, address, { key: readFileSync(tls.key), cert: readFileSync(tls.cert) });
    await registry.start();
    const project = stack.project(registry);
    for (const [path, text] of Object.entries(project.files)) {
      mkdirSync(dirname(join(scratch.repo, path)), { recursive: true });
      writeFileSync(join(scratch.repo, path), text);
    }
    gitIn(scratch.repo, 'add', '-A');
    gitIn(scratch.repo, 'commit', '-qm', 'a project with a dependency');
    // The user's config (a repository can set none of these): the registry's range, its CA, the tool's variables.
    const userEnv = Object.entries(project.env ?? {}).map(([name, value]) => `  ${name}: ${JSON.stringify(value)}\n`);
    scratch.writeConfig(`egress:\n  allowAddresses: [${address}/32]\n  trustCa: [${tls.ca}]\n${userEnv.length > 0 ? `env:\n${userEnv.join('')}` : ''}`);
    env = { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}` };
  });
  afterAll(async () => {
    await registry?.stop();
    dns.stop();
    await scratch.cleanup();
  });

  it(`moat run --allow ${stack.host} -- ${stack.command}: installed through the registry, the tests pass, the audit log has it`, async () => {
    const started = Date.now();
    const run = await moat(scratch, env, ['run', '--keep', '--task', 'allowed', '--allow', stack.host, '--', 'sh', '-c', stack.command]);
    console.log(`registry-install ${stack.toolchain}: allowed run ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(run.code, String(run)).toBe(0);
    expect(run.out).toContain(`template ${stack.toolchain} (${stack.toolchain} ${TOOLCHAIN_INFO[stack.toolchain].version}): detected from ${stack.marker}`);
    expect(run.out).toMatch(stack.passed);
    for (const request of stack.fetched) expect(registry.requests).toContain(request);
    const records = await audit(scratch, env, 'allowed');
    const allowed = records.filter((r) => r.host === stack.host && r.decision === 'allowed');
    expect(allowed.length, JSON.stringify(records)).toBeGreaterThan(0);
    expect(allowed[0]).toMatchObject({ port: registry.port, address, rule: `allow ${stack.host}` });
    expect(records.filter((r) => r.decision === 'denied')).toEqual([]);
  }, 900_000);

  it("the same run without the host allowed fails on moat's refusal, and nothing reaches the registry", async () => {
    const before = registry.requests.length;
    dns.queries.length = 0;
    const started = Date.now();
    const run = await moat(scratch, env, [
      'run',
      '--keep',
      '--task',
      'refused',
      '--network',
      'allowlist',
      '--',
      'sh',
      '-c',
      `${stack.command} || { moat-why; exit 1; }`,
    ]);
    console.log(`registry-install ${stack.toolchain}: refused run ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(run.code, String(run)).not.toBe(0);
    // The tool's own error names moat's reason; then moat-why, as an agent would run it, says what
    // to ask for. The tool's error comes on stderr and moat-why's answer on stdout, two pipes whose
    // order the reader does not keep: the tool's lines are told from moat's by their prefix instead.
    const tool = run.out
      .split('\n')
      .filter((line) => !/^moat(-why)?: /.test(line))
      .join('\n');
    expect(tool).toContain(stack.refusal(stack.host));
    expect(run.out).toContain(
      `moat: egress denied (not in allowlist: ${stack.host}) for ${stack.host}:${registry.port}. If the task needs it, ask the user to run: moat allow refused ${stack.host}.`,
    );
    expect(run.out).not.toMatch(stack.passed);
    expect(registry.requests.length).toBe(before);
    expect(dns.queries).not.toContain(stack.host);
    const denied = (await audit(scratch, env, 'refused')).filter((r) => r.host === stack.host);
    expect(denied.length).toBeGreaterThan(0);
    expect(denied.every((r) => r.decision === 'denied' && r.rule === `not in allowlist: ${stack.host}`)).toBe(true);
  }, 900_000);
});
