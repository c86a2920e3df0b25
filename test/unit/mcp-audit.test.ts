import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { auditOutcome, McpAudit, readMcpAudit } from '../../src/mcp/audit.js';
import { SafeText } from '../../src/mcp/safe-text.js';
import { TaskStore } from '../../src/state/task-store.js';
import { Scratch } from '../helpers/fixtures.js';
import { call, mcpClient } from '../helpers/mcp-client.js';

describe('mcp audit log', () => {
  const dir = mkdtempSync(join(tmpdir(), 'moat-mcp-audit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("lives beside the repository's tasks in moat's home, as TaskStore lays it out", () => {
    expect(new TaskStore('/h').mcpAuditPath('abc123')).toBe('/h/repos/abc123/mcp-audit.jsonl');
  });

  it('appends one JSON line per refused or failed call, private to the user, and reads them back', async () => {
    const file = join(dir, 'repos', 'k', 'mcp-audit.jsonl');
    const audit = new McpAudit(file, new SafeText(new Set()));
    await audit.record({ tool: 'read_file', args: { task: 't1', path: '/home/u/.ssh/id_ed25519' }, code: 'E_PATH', message: 'path outside the workspace' });
    await audit.record({ tool: 'run_command', args: { task: 't1', command: 'true' }, code: 'E_ENGINE', message: 'engine went away' });
    const entries = await readMcpAudit(file);
    expect(entries).toMatchObject([
      { tool: 'read_file', outcome: 'refused', code: 'E_PATH', task: 't1' },
      { tool: 'run_command', outcome: 'failed', code: 'E_ENGINE', task: 't1' },
    ]);
    expect(entries[0]!.args).toContain('.ssh/id_ed25519');
    expect(Date.parse(entries[0]!.time)).not.toBeNaN();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(2);
  });

  it('keeps no raw control characters, no secret value and no unbounded argument', async () => {
    const file = join(dir, 'hostile.jsonl');
    const audit = new McpAudit(file, new SafeText(new Set(['sk-secret-value-123'])));
    const entry = await audit.record({
      tool: 'x\x1b]0;evil\x07',
      args: { task: 'a\u202eb', content: 'y'.repeat(100_000), key: 'sk-secret-value-123' },
      code: 'E_CONFIG_WIDENS',
      message: 'nope \x1b[31m',
    });
    const text = readFileSync(file, 'utf8');
    expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\u202e]/);
    expect(text).not.toContain('sk-secret-value-123');
    expect(entry.args.length).toBeLessThanOrEqual(1100);
    expect(entry.outcome).toBe('refused');
  });

  it('tells refusals (policy, paths, malformed calls) from failures', () => {
    for (const code of ['E_CONFIG_WIDENS', 'E_PATH', 'E_CONFIRM', 'InvalidParams']) expect(auditOutcome(code)).toBe('refused');
    for (const code of ['E_INTERNAL', 'E_TASK_NOT_FOUND', 'E_ENGINE_UNREACHABLE']) expect(auditOutcome(code)).toBe('failed');
  });

  it('moat mcp writes the entry when a client calls a human-only tool or passes a widening argument', async () => {
    const scratch = new Scratch();
    const { client, close } = await mcpClient(scratch);
    try {
      // A JSON-RPC error or an error result, as the SDK gives it: refused either way.
      const refusal = (name: string, args: Record<string, unknown>) =>
        call(client, name, args).then(
          (r) => (r.isError ? r.text : 'not refused'),
          (e: Error) => e.message,
        );
      expect(await refusal('merge_task', { task: 'x' })).toMatch(/human's to do/);
      expect(await refusal('list_tasks', { hosts: ['evil.example'] })).toMatch(/E_CONFIG_WIDENS/);
      const [repoKey] = readdirSync(join(scratch.home, 'repos'));
      const entries = await readMcpAudit(new TaskStore(scratch.home).mcpAuditPath(repoKey!));
      expect(entries).toMatchObject([
        { tool: 'merge_task', outcome: 'refused', code: 'InvalidParams', task: 'x' },
        { tool: 'list_tasks', outcome: 'refused', code: 'E_CONFIG_WIDENS' },
      ]);
      expect(entries[1]!.args).toContain('evil.example');
    } finally {
      await close();
      await scratch.cleanup();
    }
  });
});
