import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { gitIn, Scratch } from '../helpers/fixtures.js';
import { call, mcpClient, RAW_UNSAFE } from '../helpers/mcp-client.js';

/**
 * What a prompt-injected MCP client can try through moat's tools: paths out of the workspace,
 * links in it to host files (the user's ~/.ssh, the repository's .git, another task's workspace),
 * arguments that widen a policy, hostile strings. No host byte may be read or written, and every
 * policy stays as the user's config made it.
 */
describe('moat mcp: the boundary', () => {
  const scratch = new Scratch();
  const userHome = join(scratch.root, 'user-home');
  const sshKey = join(userHome, '.ssh', 'id_rsa');
  const gitConfig = join(scratch.repo, '.git', 'config');
  let client: Client;
  let close: () => Promise<void>;
  let task = '';
  let other = '';
  let otherWorkspace = '';
  const MARKERS = ['FAKE-SSH-KEY-MARKER', 'GITCONFIG-MARKER', 'OTHER-TASK-MARKER'];

  beforeAll(async () => {
    mkdirSync(join(userHome, '.ssh'), { recursive: true, mode: 0o700 });
    writeFileSync(sshKey, '-----BEGIN FAKE-SSH-KEY-MARKER-----\n', { mode: 0o600 });
    gitIn(scratch.repo, 'config', 'moat.marker', 'GITCONFIG-MARKER');
    ({ client, close } = await mcpClient(scratch, { HOME: userHome }));
    task = (await call(client, 'create_task', { title: 'attacker' })).data.task;
    other = (await call(client, 'create_task', { title: 'victim' })).data.task;
    await call(client, 'write_file', { task: other, path: 'secret.txt', content: 'OTHER-TASK-MARKER\n' });
    const moat = scratch.moat();
    otherWorkspace = moat.context.store.workspacePath((await moat.context.repo()).key, other);
    expect(readFileSync(join(otherWorkspace, 'secret.txt'), 'utf8')).toContain('OTHER-TASK-MARKER');
    // The sandbox plants links to host paths it guessed (it knows them: the attacker wrote the prompt).
    const links = [
      ['l-passwd', '/etc/passwd'],
      ['l-ssh', sshKey],
      ['l-sshdir', join(userHome, '.ssh')],
      ['l-git', join(scratch.repo, '.git')],
      ['l-gitconfig', gitConfig],
      ['l-other', join(otherWorkspace, 'secret.txt')],
      ['l-otherdir', otherWorkspace],
      ['l-root', '/'],
      ['l-up', '..'],
    ];
    const made = await call(client, 'run_command', { task, command: links.map(([name, target]) => `ln -s '${target}' ${name}`).join(' && ') });
    expect(made.data.exitCode, made.text).toBe(0);
  }, 300_000);

  afterAll(async () => {
    await close?.();
    await scratch.cleanup();
  });

  const hostUntouched = () => {
    expect(readFileSync(sshKey, 'utf8')).toBe('-----BEGIN FAKE-SSH-KEY-MARKER-----\n');
    expect(readdirSync(join(userHome, '.ssh'))).toEqual(['id_rsa']);
    expect(readFileSync(gitConfig, 'utf8')).toContain('GITCONFIG-MARKER');
    expect(existsSync(join(scratch.repo, '.git', 'hooks', 'pre-commit'))).toBe(false);
    expect(
      readdirSync(otherWorkspace)
        .filter((f) => f !== '.git')
        .sort(),
    ).toEqual(['README.md', 'app.sh', 'secret.txt']);
    expect(readFileSync(join(otherWorkspace, 'secret.txt'), 'utf8')).toBe('OTHER-TASK-MARKER\n');
  };
  const noMarker = (text: string) => {
    for (const marker of MARKERS) expect(text).not.toContain(marker);
  };

  it('refuses paths that leave the workspace, in every file tool', async () => {
    const paths = [
      '../x',
      '/etc/passwd',
      '/workspace/../etc/passwd',
      'a/../../b',
      '/workspace2/x',
      '/',
      '/home/agent/.bashrc',
      'x\x00y',
      'x\x1b[2Ky',
      'a\u202eb',
    ];
    for (const path of paths) {
      for (const [tool, args] of [
        ['read_file', { path }],
        ['read_file', { path, offset: 1, maxBytes: 16 }],
        ['list_files', { path }],
        ['write_file', { path, content: 'planted' }],
        ['edit_file', { path, search: 'a', replace: 'b' }],
        ['delete_file', { path }],
        ['run_command', { command: 'pwd', cwd: path }],
      ] as const) {
        const result = await call(client, tool, { task, ...args });
        expect(result.isError, `${tool} ${JSON.stringify(path)}: ${result.text}`).toBe(true);
        expect(RAW_UNSAFE.test(result.text)).toBe(false);
      }
    }
    // Too long for any path: a JSON-RPC error before anything runs.
    await expect(client.callTool({ name: 'read_file', arguments: { task, path: 'a/'.repeat(50_000) } })).rejects.toThrow(/-32602/);
    hostUntouched();
  });

  it('reads no host byte through links in the workspace', async () => {
    for (const link of [
      'l-passwd',
      'l-ssh',
      'l-git/config',
      'l-gitconfig',
      'l-other',
      'l-otherdir/secret.txt',
      'l-root/etc/passwd',
      'l-up/etc/passwd',
      'l-sshdir/id_rsa',
    ]) {
      const read = await call(client, 'read_file', { task, path: link });
      expect(read.isError, `${link}: ${read.text}`).toBe(true);
      expect(read.text).toMatch(/leads out of the workspace|does not exist/);
      noMarker(read.text);
      expect(read.text).not.toContain('root:x:0:0');
      // A page is the same read, cut after: an offset changes nothing of what may be read.
      const page = await call(client, 'read_file', { task, path: link, offset: 4, maxBytes: 64 });
      expect(page.isError, `${link} (page): ${page.text}`).toBe(true);
      noMarker(page.text);
      expect(page.text).not.toContain('root:x:0:0');
    }
    for (const link of ['l-sshdir', 'l-git', 'l-otherdir', 'l-root', 'l-up']) {
      const listed = await call(client, 'list_files', { task, path: link });
      expect(listed.isError, `${link}: ${listed.text}`).toBe(true);
      expect(listed.text).not.toContain('id_rsa');
      expect(listed.text).not.toContain('secret.txt');
    }
    // Through a command the sandbox sees its own filesystem only: the host's files are not there.
    const looked = await call(client, 'run_command', { task, command: 'cat l-ssh l-gitconfig l-other l-otherdir/secret.txt 2>&1; ls l-sshdir 2>&1; true' });
    noMarker(looked.text);
    // The listing shows the links as links, and the edit of one refuses as its read does.
    const entries = (await call(client, 'list_files', { task })).data.entries as Array<{ path: string; type: string }>;
    expect(entries.filter((e) => e.path.startsWith('l-')).every((e) => e.type === 'link')).toBe(true);
    expect((await call(client, 'edit_file', { task, path: 'l-gitconfig', search: 'GITCONFIG', replace: 'X' })).isError).toBe(true);
    hostUntouched();
  });

  it('writes and deletes no host byte through links in the workspace', async () => {
    for (const path of [
      'l-sshdir/authorized_keys',
      'l-otherdir/planted.txt',
      'l-gitconfig',
      'l-git/hooks/pre-commit',
      'l-ssh',
      'l-other',
      'l-root/tmp/planted',
      'l-up/planted',
    ]) {
      const wrote = await call(client, 'write_file', { task, path, content: '#!/bin/sh\necho planted\n' });
      expect(wrote.isError, `${path}: ${wrote.text}`).toBe(true);
    }
    for (const path of ['l-sshdir/id_rsa', 'l-otherdir/secret.txt', 'l-git/config', 'l-otherdir']) {
      const deleted = await call(client, 'delete_file', { task, path, recursive: true });
      expect(deleted.isError === true || path === 'l-otherdir', `${path}: ${deleted.text}`).toBe(true);
    }
    // Deleting a link deletes the link, never what it names.
    expect((await call(client, 'delete_file', { task, path: 'l-ssh' })).isError).toBe(false);
    hostUntouched();
  });

  it("refuses every widening through every tool's arguments, saying what the human would do", async () => {
    const base: Record<string, Record<string, unknown>> = {
      create_task: {},
      list_tasks: {},
      show_task: { task },
      run_command: { task, command: 'true' },
      command_status: { handle: 'cmd-0000000000000000' },
      command_stop: { handle: 'cmd-0000000000000000' },
      read_file: { task, path: 'x' },
      list_files: { task },
      write_file: { task, path: 'x', content: 'x' },
      edit_file: { task, path: 'x', search: 'a', replace: 'b' },
      delete_file: { task, path: 'x' },
      diff_task: { task },
      egress_log: { task },
      task_stats: { task },
      reset_task: { task },
      remove_task: { task },
      request_host: { task, host: 'registry.example', reason: 'to install a package' },
      pending_requests: { task },
    };
    const widenings: Array<Record<string, unknown>> = [
      { allow: ['evil.example'] },
      { hosts: ['evil.example'] },
      { network: 'open' },
      { env: { AWS_SECRET_ACCESS_KEY: 'x' } },
      { limits: { memory: '64g' } },
      { mounts: [{ source: '/', target: '/mnt/host' }] },
      { secrets: { GITHUB_TOKEN: {} } },
      { user: 'root' },
      { privileged: true },
      { force: true },
    ];
    const { tools } = await client.listTools();
    expect(Object.keys(base).sort()).toEqual(tools.map((t) => t.name).sort());
    for (const tool of tools) {
      for (const widening of widenings) {
        if (tool.name === 'create_task' && 'network' in widening) continue;
        const result = await call(client, tool.name, { ...base[tool.name], ...widening });
        expect(result.isError, `${tool.name} ${JSON.stringify(widening)}`).toBe(true);
        expect(result.text).toMatch(/E_CONFIG_WIDENS: refused over MCP.*\nhint: only the human can do this: \S/);
      }
    }
    await expect(client.callTool({ name: 'create_task', arguments: { network: 'open' } })).rejects.toThrow(/-32602/);
    const allowlist = await call(client, 'create_task', { network: 'allowlist' });
    expect(allowlist.isError).toBe(true);
    expect(allowlist.text).toMatch(/your config allows no host.*\nhint: only the human can do this/);
    const agentTemplate = await call(client, 'create_task', { template: 'codex' });
    expect(agentTemplate.isError).toBe(true);
    expect(agentTemplate.text).toMatch(/template codex grants .*\nhint: only the human can do this: moat up -t codex/);
    expect((await call(client, 'create_task', { base: '--output=/tmp/x' })).text).toMatch(/E_GIT_REF/);
    // Nothing changed: the attacker's task is as the config made it, no other task appeared.
    const shown = await call(client, 'show_task', { task });
    expect(shown.data).toMatchObject({ network: 'none', state: 'running' });
    expect((await call(client, 'list_tasks', {})).data.tasks.map((t: { name: string }) => t.name).sort()).toEqual([task, other].sort());
    expect(gitIn(scratch.repo, 'branch', '--list', 'moat/*').split('\n').length).toBe(2);
  });

  it('refuses or escapes hostile strings', async () => {
    await expect(client.callTool({ name: 'create_task', arguments: { title: 'x'.repeat(100_000) } })).rejects.toThrow(/-32602/);
    await expect(client.callTool({ name: 'run_command', arguments: { task, command: 'x'.repeat(100_000) } })).rejects.toThrow(/-32602/);
    await expect(client.callTool({ name: 'show_task', arguments: { task: `${task}\x1b[2K` } })).rejects.toThrow(/-32602/);
    const named = await call(client, 'create_task', { title: '\u202eevil\x1b]0;title\x07 \u200bname\n' });
    expect(named.data.task).toMatch(/^evil-0-title-name-[0-9a-f]{4}$/);
    await call(client, 'remove_task', { task: named.data.task });
    await call(client, 'run_command', { task, command: 'touch "$(printf "evil\\033[2K\\342\\200\\256name\\nline")"' });
    const listed = await call(client, 'list_files', { task });
    expect(RAW_UNSAFE.test(listed.text)).toBe(false);
    expect(RAW_UNSAFE.test(JSON.stringify(listed.data))).toBe(false);
    expect(listed.text).toContain('evil\\\\x1b[2K\\\\u202ename\\\\nline');
    const big = await call(client, 'write_file', { task, path: 'big.txt', content: 'y'.repeat(100_000) });
    expect(big.data.bytes).toBe(100_000);
    hostUntouched();
  });
});
