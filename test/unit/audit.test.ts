import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendAudit, auditBytes, auditMaxBytes, countAudit, readAudit, rotatedAuditFile, type AuditRecord } from '../../src/gateway/audit.js';

const attempt = (i: number, decision: AuditRecord['decision'] = 'denied'): AuditRecord => ({
  time: new Date(1_700_000_000_000 + i).toISOString(),
  task: 't',
  method: 'CONNECT',
  host: `h${i}.example.com`,
  port: 443,
  decision,
  rule: 'not allowed',
  bytesUp: 0,
  bytesDown: 0,
  durationMs: 0,
});

describe('the egress audit log', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'moat-audit-'));
    file = join(dir, 'audit.jsonl');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('stays under twice its cap however many attempts are written, and keeps the newest', async () => {
    const cap = 20_000;
    for (let i = 0; i < 2_000; i += 1) appendAudit(file, attempt(i), [], cap);
    expect(statSync(file).size).toBeLessThanOrEqual(cap);
    expect(statSync(rotatedAuditFile(file)).size).toBeLessThanOrEqual(cap);
    expect(auditBytes(file)).toBeLessThanOrEqual(2 * cap);
    const { records } = await readAudit(file);
    // Oldest first, in order, ending with the last one written, none missing in between.
    expect(records.at(-1)?.host).toBe('h1999.example.com');
    const first = Number(records[0]!.host.slice(1).split('.')[0]);
    expect(records.map((r) => r.host)).toEqual(Array.from({ length: 2_000 - first }, (_, k) => `h${first + k}.example.com`));
    // More than one file's worth is kept: the rotated file is read too.
    expect(records.length * (JSON.stringify(attempt(1999)).length + 1)).toBeGreaterThan(cap);
    expect(await countAudit(file)).toEqual({ allowed: 0, denied: records.length });
  });

  it('a reader following it sees every line once across rotations', async () => {
    const cap = 16 * 1024;
    let { records, cursor } = await readAudit(file);
    expect(records).toEqual([]);
    const seen: string[] = [];
    for (let i = 0; i < 600; i += 1) {
      appendAudit(file, attempt(i, i % 2 ? 'allowed' : 'denied'), [], cap);
      // Read after every few lines: often enough that no line is rotated away unread.
      if (i % 7 === 0) {
        ({ records, cursor } = await readAudit(file, cursor));
        seen.push(...records.map((r) => r.host));
      }
    }
    ({ records, cursor } = await readAudit(file, cursor));
    seen.push(...records.map((r) => r.host));
    expect(seen).toEqual(Array.from({ length: 600 }, (_, i) => `h${i}.example.com`));
    expect((await readAudit(file, cursor)).records).toEqual([]);
  });

  it('leaves a half-written last line for the next read, and redacts secrets', async () => {
    appendAudit(file, { ...attempt(1), host: 'sk-secret.example.com' }, ['sk-secret']);
    writeFileSync(file, '{"time":"cut', { flag: 'a' });
    const { records, cursor } = await readAudit(file);
    expect(records).toHaveLength(1);
    expect(records[0]!.host).not.toContain('sk-secret');
    writeFileSync(file, '"}\n', { flag: 'a' });
    expect((await readAudit(file, cursor)).records).toEqual([{ time: 'cut' }]);
  });

  it('takes its cap from MOAT_AUDIT_MAX_BYTES, within sense', () => {
    expect(auditMaxBytes({})).toBe(8 * 1024 ** 2);
    expect(auditMaxBytes({ MOAT_AUDIT_MAX_BYTES: '100000' })).toBe(100_000);
    expect(auditMaxBytes({ MOAT_AUDIT_MAX_BYTES: '10' })).toBe(16 * 1024);
    expect(auditMaxBytes({ MOAT_AUDIT_MAX_BYTES: 'lots' })).toBe(8 * 1024 ** 2);
  });
});
