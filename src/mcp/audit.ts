import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { SafeText } from './safe-text.js';

/**
 * The MCP audit log: every tool call this server refused (a policy it will not widen, a path out
 * of the workspace, an unknown tool or argument) or that failed, one JSON object per line in
 * `<home>/repos/<repoKey>/mcp-audit.jsonl` (TaskStore owns the layout). A prompt-injected client
 * leaves a trace the human can read after the fact, as the egress log does for the sandbox.
 * Every string is made terminal-safe and secret-free first, and bounded: the log is read in a
 * terminal, and a hostile client must not fill the disk through it.
 */
export type McpAuditOutcome = 'refused' | 'failed';

export interface McpAuditEntry {
  time: string;
  tool: string;
  outcome: McpAuditOutcome;
  /** moat's error code (E_PATH, E_CONFIG_WIDENS…), or the JSON-RPC one for a malformed call. */
  code: string;
  message: string;
  /** The task the call named, when it named one. */
  task?: string;
  /** The call's arguments as JSON, cut to MAX_ARGS characters. */
  args: string;
}

/** Codes that mean the server said no on purpose; any other failure is 'failed'. */
const REFUSALS = new Set(['E_CONFIG_WIDENS', 'E_PATH', 'E_CONFIRM', 'E_REF', 'E_GIT_REF', 'E_USAGE', 'E_SECONDS', 'E_BYTES', 'InvalidParams']);

const MAX_ARGS = 1000;
const MAX_MESSAGE = 500;

export function auditOutcome(code: string): McpAuditOutcome {
  return REFUSALS.has(code) ? 'refused' : 'failed';
}

export class McpAudit {
  constructor(
    readonly file: string,
    private readonly safe: SafeText,
  ) {}

  /** Appends one entry. A log that cannot be written is reported, never a reason to fail the call. */
  async record(call: { tool: string; args: Record<string, unknown>; code: string; message: string }): Promise<McpAuditEntry> {
    const task = typeof call.args.task === 'string' ? this.safe.line(call.args.task.slice(0, 100)) : undefined;
    const entry: McpAuditEntry = {
      time: new Date().toISOString(),
      tool: this.safe.line(call.tool.slice(0, 100)),
      outcome: auditOutcome(call.code),
      code: this.safe.line(call.code.slice(0, 40)),
      message: this.safe.line(call.message.slice(0, MAX_MESSAGE)),
      ...(task !== undefined ? { task } : {}),
      args: this.safe.line(jsonOf(call.args).slice(0, MAX_ARGS)),
    };
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    await appendFile(this.file, `${JSON.stringify(entry)}\n`, { mode: 0o600 });
    return entry;
  }
}

/** The entries of a log (none when it does not exist); a torn last line is skipped. */
export async function readMcpAudit(file: string): Promise<McpAuditEntry[]> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw error;
  });
  return text.split('\n').flatMap((line) => {
    try {
      return line ? [JSON.parse(line) as McpAuditEntry] : [];
    } catch {
      return [];
    }
  });
}

function jsonOf(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return '(not JSON)';
  }
}
