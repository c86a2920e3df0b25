import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureIO, gitIn, Scratch } from '../helpers/fixtures.js';

/** Each template's image builds offline from the base image, and its CLI starts inside a sandbox. */
describe('templates', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('lists the built-in templates with what they ask for', async () => {
    const templates = await scratch.moat().templates();
    expect(templates.map((t) => t.name)).toEqual(['claude', 'codex', 'gemini', 'go', 'node', 'opencode', 'python', 'rust', 'shell']);
    expect(templates.find((t) => t.name === 'codex')).toMatchObject({ egress: ['api.openai.com'], toolchains: ['node'], detect: true });
    for (const toolchain of ['node', 'python', 'go', 'rust']) expect(templates.find((t) => t.name === toolchain)).toMatchObject({ toolchains: [toolchain] });
    expect(templates.find((t) => t.name === 'shell')).toMatchObject({ toolchains: [] });
  });

  it.each([
    ['codex', /codex-cli \d/],
    ['claude', /\d+\.\d+\.\d+ \(Claude Code\)/],
    ['gemini', /^\d+\.\d+\.\d+/],
    ['opencode', /^\d+\.\d+\.\d+/],
  ])(
    '%s: the CLI starts inside its sandbox, as the sandbox user, with its network and no key',
    async (template, version) => {
      const moat = scratch.moat();
      const record = await moat.up({ task: `t-${template}`, template });
      expect(record.network).toBe('allowlist');
      const cap = captureIO();
      const result = await moat.exec(`t-${template}`, [template, '--version'], cap.io, { sync: false });
      expect(result.exitCode, cap.err()).toBe(0);
      expect(cap.out().trim()).toMatch(version);
      const who = captureIO();
      await moat.exec(`t-${template}`, ['sh', '-c', 'id -u; node --version'], who.io, { sync: false });
      const [uid, node] = who.out().trim().split('\n');
      expect(Number(uid)).toBeGreaterThan(0);
      expect(node).toMatch(/^v2[2-9]\./);
      await moat.rm(`t-${template}`, { force: true });
    },
    600_000,
  );

  it('codex gets its config seeded into the sandbox home, pointing at the gateway route', async () => {
    const moat = scratch.moat();
    await moat.up({ task: 'seeded', template: 'codex' });
    const cap = captureIO();
    await moat.exec('seeded', ['cat', '/home/agent/.codex/config.toml'], cap.io, { sync: false });
    expect(cap.out()).toContain('base_url = "http://moat.gateway/openai/v1"');
    await moat.reset('seeded');
    const again = captureIO();
    await moat.exec('seeded', ['cat', '/home/agent/.codex/config.toml'], again.io, { sync: false });
    expect(again.out()).toContain('moat.gateway');
    await moat.rm('seeded', { force: true });
  }, 600_000);

  it('moat new writes the choice into moat.yaml and keeps what was there', async () => {
    writeFileSync(join(scratch.repo, 'moat.yaml'), '# our sandbox settings\nlimits:\n  pids: 256\n');
    await scratch.moat().newTemplate('codex');
    const text = readFileSync(join(scratch.repo, 'moat.yaml'), 'utf8');
    expect(text).toContain('# our sandbox settings');
    expect(text).toContain('template: codex');
    expect(text).toContain('pids: 256');
    await expect(scratch.moat().newTemplate('nope')).rejects.toMatchObject({ code: 'E_TEMPLATE_UNKNOWN' });
  });

  it('a template chosen by the repository does not get its network', async () => {
    const moat = scratch.moat();
    const record = await moat.up({ task: 'repo-choice' });
    expect(record.template).toBe('codex');
    expect(record.network).toBe('none');
    await moat.rm('repo-choice', { force: true });
  }, 600_000);

  it("the user's own template folder (user config only) adds templates", async () => {
    const { mkdirSync } = await import('node:fs');
    const dir = join(scratch.root, 'my-templates');
    mkdirSync(join(dir, 'rusty'), { recursive: true });
    writeFileSync(
      join(dir, 'rusty', 'Dockerfile'),
      'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG MOAT_UID=1000\nARG MOAT_GID=1000\nRUN groupadd -o -g "$MOAT_GID" agent && useradd -o -u "$MOAT_UID" -g "$MOAT_GID" -M -d /home/agent agent && echo custom > /etc/marker\nUSER ${MOAT_UID}:${MOAT_GID}\n',
    );
    writeFileSync(join(dir, 'rusty', 'template.yaml'), 'description: my own template\n');
    scratch.writeConfig(`templates: [${dir}]\n`);
    const moat = scratch.moat();
    const listed = await moat.templates();
    expect(listed.find((t) => t.name === 'rusty')).toMatchObject({ description: 'my own template', source: dir });
    writeFileSync(join(scratch.repo, 'moat.yaml'), 'template: shell\n');
    await moat.up({ task: 'mine', template: 'rusty' });
    const cap = captureIO();
    await moat.exec('mine', ['cat', '/etc/marker'], cap.io, { sync: false });
    expect(cap.out().trim()).toBe('custom');
    await moat.rm('mine', { force: true });
    // A repository cannot point moat at template folders: that would let it decide what runs.
    writeFileSync(join(scratch.repo, 'moat.yaml'), `templates: [${dir}]\n`);
    await expect(scratch.moat().up({ task: 'nope' })).rejects.toMatchObject({ code: 'E_CONFIG_WIDENS' });
    writeFileSync(join(scratch.repo, 'moat.yaml'), '');
    // A template whose build fails: the failing step and the log tail, and nothing made.
    mkdirSync(join(dir, 'broken'), { recursive: true });
    writeFileSync(join(dir, 'broken', 'Dockerfile'), 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo about to fail && exit 42\n');
    scratch.writeConfig(`templates: [${dir}]\n`);
    const failed = await scratch
      .moat()
      .up({ task: 'broken', template: 'broken' })
      .catch((e: unknown) => e as { code: string; message: string; details: { logTail: string[] } });
    expect(failed).toMatchObject({ code: 'E_IMAGE_BUILD', message: expect.stringContaining('RUN echo about to fail') });
    expect(failed.details.logTail.join('\n')).toContain('about to fail');
    expect((await scratch.moat().ls()).map((t) => t.name)).not.toContain('broken');
    scratch.writeConfig('');
  }, 600_000);

  it('agent on a template without an agent command is a clear error', async () => {
    await expect(scratch.moat().agent('hello', captureIO().io, { task: 'plain', template: 'shell' })).rejects.toMatchObject({ code: 'E_USAGE' });
  });
});

describe('devcontainer.json as the environment', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('builds from the committed Dockerfile (committed files only), sets containerEnv, runs postCreateCommand inside', async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(scratch.repo, '.devcontainer'));
    writeFileSync(join(scratch.repo, '.devcontainer', 'Dockerfile'), 'FROM moat-base:bookworm\nCOPY . /ctx\nRUN echo from-devcontainer > /etc/dev-marker\n');
    writeFileSync(
      join(scratch.repo, '.devcontainer', 'devcontainer.json'),
      '{\n  // a comment\n  "build": { "dockerfile": "Dockerfile" },\n  "containerEnv": { "PROJECT_MODE": "dev" },\n  "postCreateCommand": "echo created > /workspace/.post-created",\n  "forwardPorts": [3000],\n}\n',
    );
    writeFileSync(join(scratch.repo, '.gitignore'), '.env\n');
    gitIn(scratch.repo, 'add', '-A');
    gitIn(scratch.repo, 'commit', '-qm', 'devcontainer');
    // Uncommitted and ignored: must never reach the build.
    writeFileSync(join(scratch.repo, '.devcontainer', '.env'), 'SECRET=devcontainer-build-leak\n');
    const moat = scratch.moat();
    await moat.up({ task: 'dev', devcontainer: true });
    const cap = captureIO();
    await moat.exec('dev', ['sh', '-c', 'cat /etc/dev-marker; echo "$PROJECT_MODE"; cat /workspace/.post-created; ls -A /ctx; id -u'], cap.io, { sync: false });
    const lines = cap.out().trim().split('\n');
    expect(lines.slice(0, 3)).toEqual(['from-devcontainer', 'dev', 'created']);
    expect(lines).not.toContain('.env');
    expect(Number(lines.at(-1))).toBeGreaterThan(0);
    await moat.rm('dev', { force: true });
  }, 600_000);

  it('refuses a devcontainer that would weaken the sandbox, and changes nothing', async () => {
    writeFileSync(
      join(scratch.repo, '.devcontainer', 'devcontainer.json'),
      '{ "image": "moat-base:bookworm", "privileged": true, "runArgs": ["--network=host"] }',
    );
    gitIn(scratch.repo, 'commit', '-qam', 'privileged');
    await expect(scratch.moat().up({ task: 'priv', devcontainer: true })).rejects.toMatchObject({
      code: 'E_CONFIG_WIDENS',
      message: expect.stringContaining('privileged'),
    });
    writeFileSync(join(scratch.repo, '.devcontainer', 'devcontainer.json'), '{ "image": "registry.example/never-pulled:1" }');
    gitIn(scratch.repo, 'commit', '-qam', 'remote image');
    await expect(scratch.moat().up({ task: 'pull', devcontainer: true })).rejects.toMatchObject({
      code: 'E_IMAGE_MISSING',
      hint: expect.stringContaining('never pulls'),
    });
    expect(await scratch.moat().ls()).toEqual([]);
  });
});

describe("a repository's own template", () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it('is used only after the user approved its exact content, read from git objects', async () => {
    const { mkdirSync } = await import('node:fs');
    const dir = join(scratch.repo, '.moat', 'templates', 'proj');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'Dockerfile'),
      'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG MOAT_UID=1000\nARG MOAT_GID=1000\nRUN groupadd -o -g "$MOAT_GID" agent && useradd -o -u "$MOAT_UID" -g "$MOAT_GID" -M -d /home/agent agent && echo repo-template > /etc/which\nUSER ${MOAT_UID}:${MOAT_GID}\n',
    );
    writeFileSync(join(dir, 'template.yaml'), "description: the project's own environment\n");
    gitIn(scratch.repo, 'add', '-A');
    gitIn(scratch.repo, 'commit', '-qm', 'repo template');
    const moat = scratch.moat();
    await expect(moat.up({ task: 'rt', template: 'proj' })).rejects.toMatchObject({ code: 'E_CONFIG_WIDENS', hint: expect.stringContaining('moat approve') });
    const approval = await moat.approve();
    expect(approval.templates).toHaveLength(1);
    await scratch.moat().up({ task: 'rt', template: 'proj' });
    const cap = captureIO();
    await scratch.moat().exec('rt', ['cat', '/etc/which'], cap.io, { sync: false });
    expect(cap.out().trim()).toBe('repo-template');
    // Changed content is a new question.
    writeFileSync(join(dir, 'Dockerfile'), 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo changed\n');
    gitIn(scratch.repo, 'commit', '-qam', 'changed template');
    await expect(scratch.moat().up({ task: 'rt2', template: 'proj' })).rejects.toMatchObject({ code: 'E_CONFIG_WIDENS' });
  }, 600_000);
});
