import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  appendAudit,
  auditBytes,
  auditMaxBytes,
  countAudit,
  readAudit,
  readAuditLines,
  readAuditTail,
  rotatedAuditFile,
  type AuditRecord,
} from '../../src/gateway/audit.js';

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

  it('a reader starting now gets the last lines (across a rotation when the new file has too few), then only what follows', async () => {
    const cap = 16 * 1024;
    for (let i = 0; i < 1_000; i += 1) appendAudit(file, attempt(i), [], cap);
    const tail = await readAuditTail(file, 50);
    expect(tail.lines.map((l) => (JSON.parse(l) as AuditRecord).host)).toEqual(Array.from({ length: 50 }, (_, k) => `h${950 + k}.example.com`));
    // More than the current file holds: the rotated one's end comes first, in order.
    const kept = (await readAudit(file)).records.map((r) => r.host);
    const long = await readAuditTail(file, 10_000);
    expect(long.lines.map((l) => (JSON.parse(l) as AuditRecord).host)).toEqual(kept);
    appendAudit(file, attempt(1_000), [], cap);
    expect((await readAudit(file, tail.cursor)).records.map((r) => r.host)).toEqual(['h1000.example.com']);
  });

  it('reads only the end of a long log for its last lines', async () => {
    writeFileSync(file, Array.from({ length: 10_000 }, (_, i) => `${JSON.stringify(attempt(i))}\n`).join(''));
    expect(statSync(file).size).toBeGreaterThan(1024 ** 2);
    // A cut first line is left out: every line returned is whole.
    const { lines } = await readAuditTail(file, 100_000);
    expect(lines.length).toBeLessThan(2_000);
    expect(lines.map((l) => (JSON.parse(l) as AuditRecord).host).at(-1)).toBe('h9999.example.com');
  });

  it('costs a reader nothing new when nothing was written, and follows when something was', async () => {
    appendAudit(file, attempt(1));
    const { cursor } = await readAuditLines(file);
    const again = await readAuditLines(file, cursor);
    expect(again).toEqual({ lines: [], cursor });
    appendAudit(file, attempt(2));
    expect((await readAuditLines(file, cursor)).lines.map((l) => (JSON.parse(l) as AuditRecord).host)).toEqual(['h2.example.com']);
  });

  it('takes its cap from MOAT_AUDIT_MAX_BYTES, within sense', () => {
    expect(auditMaxBytes({})).toBe(8 * 1024 ** 2);
    expect(auditMaxBytes({ MOAT_AUDIT_MAX_BYTES: '100000' })).toBe(100_000);
    expect(auditMaxBytes({ MOAT_AUDIT_MAX_BYTES: '10' })).toBe(16 * 1024);
    expect(auditMaxBytes({ MOAT_AUDIT_MAX_BYTES: 'lots' })).toBe(8 * 1024 ** 2);
  });
});
