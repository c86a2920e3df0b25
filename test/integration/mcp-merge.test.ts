import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { gitIn, Scratch } from '../helpers/fixtures.js';
import { call, mcpClient } from '../helpers/mcp-client.js';

/**
 * Merge over MCP: offered only when the user's own config enables it (read at each call), never
 * by a repository, and even then never for work a host tool may run or follow.
 */
describe('moat mcp: merge_task, when the user enabled it', () => {
  const scratch = new Scratch();
  let client: Client;
  let close: () => Promise<void>;
  let task = '';
  const names = async () => (await client.listTools()).tools.map((t) => t.name);
  const enable = (on: boolean) => scratch.writeConfig(on ? 'mcp:\n  merge: true\n' : '{}\n');

  beforeAll(async () => {
    // The repository asks for it: that counts for nothing.
    writeFileSync(join(scratch.repo, 'moat.yaml'), 'mcp:\n  merge: true\n');
    gitIn(scratch.repo, 'add', 'moat.yaml');
    gitIn(scratch.repo, 'commit', '-qm', 'a repository that asks for merge over MCP');
    enable(false);
    ({ client, close } = await mcpClient(scratch));
  }, 300_000);

  afterAll(async () => {
    await close?.();
    await scratch.cleanup();
  });

  it('is not offered, nor callable, while only the repository asks for it', async () => {
    expect(await names()).not.toContain('merge_task');
    await expect(client.callTool({ name: 'merge_task', arguments: { task: 'any' } })).rejects.toThrow(/unknown tool.*human's to do \(moat merge TASK\)/);
    // And a task of such a repository is refused: the setting is the user's alone.
    const refused = await call(client, 'create_task', { title: 'x', template: 'shell' });
    expect(refused.isError).toBe(true);
    expect(refused.text).toMatch(/moat\.yaml asks for more than you granted: mcp/);
    gitIn(scratch.repo, 'rm', '-q', 'moat.yaml');
    gitIn(scratch.repo, 'commit', '-qm', 'no moat.yaml');
  });

  it("merges clean committed work into the user's branch once the user's config enables it", async () => {
    enable(true);
    expect(await names()).toContain('merge_task');
    const created = await call(client, 'create_task', { title: 'add notes', template: 'shell' });
    expect(created.isError, created.text).toBe(false);
    task = created.data.task;
    const ran = await call(client, 'run_command', { task, command: 'echo notes > notes.txt && git add notes.txt && git commit -qm "notes by the agent"' });
    expect(ran.data.exitCode, ran.text).toBe(0);
    const before = gitIn(scratch.repo, 'rev-parse', 'HEAD');
    const merged = await call(client, 'merge_task', { task });
    expect(merged.isError, merged.text).toBe(false);
    expect(merged.data).toMatchObject({ task, into: 'main', strategy: 'merge', commits: 1, flagged: [] });
    expect(gitIn(scratch.repo, 'rev-parse', 'HEAD^1')).toBe(before);
    expect(gitIn(scratch.repo, 'show', 'HEAD:notes.txt')).toBe('notes');
    // It never confirms for the human: `yes` is no argument of the tool.
    await expect(client.callTool({ name: 'merge_task', arguments: { task, yes: true } })).rejects.toThrow(/merge_task has no argument "yes"/);
  });

  it('refuses work a host tool would run, and changes nothing', async () => {
    const ran = await call(client, 'run_command', {
      task,
      command: 'mkdir -p .github/workflows && echo "on: push" > .github/workflows/ci.yml && git add -A && git commit -qm "ci"',
    });
    expect(ran.data.exitCode, ran.text).toBe(0);
    const before = gitIn(scratch.repo, 'rev-parse', 'HEAD');
    const refused = await call(client, 'merge_task', { task });
    expect(refused.isError).toBe(true);
    expect(refused.text).toMatch(/\.github\/workflows\/ci\.yml.*that merge is the human's/);
    expect(refused.text).toMatch(new RegExp(`moat merge ${task} --yes`));
    expect(gitIn(scratch.repo, 'rev-parse', 'HEAD')).toBe(before);
    expect(gitIn(scratch.repo, 'status', '--porcelain')).toBe('');
  });

  it('is gone at once when the user turns it off again', async () => {
    enable(false);
    expect(await names()).not.toContain('merge_task');
    await expect(client.callTool({ name: 'merge_task', arguments: { task } })).rejects.toThrow(/unknown tool/);
  });
});
