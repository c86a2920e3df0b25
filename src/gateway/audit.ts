import { appendFileSync } from 'node:fs';
import { redact } from '../domain/redact.js';

/** One line of a task's egress audit log: every attempt, allowed or not. Never a secret value. */
export interface AuditRecord {
  time: string;
  task: string;
  method: string;
  host: string;
  port: number;
  sni?: string;
  address?: string;
  decision: 'allowed' | 'denied';
  rule: string;
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
}

export function appendAudit(file: string, record: AuditRecord, secrets: string[] = []): void {
  appendFileSync(file, `${redact(JSON.stringify(record), secrets)}\n`, { mode: 0o600 });
}
