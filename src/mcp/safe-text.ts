import { redact } from '../domain/redact.js';
import { terminalLines, terminalText } from '../domain/terminal-text.js';

/**
 * What MCP text needs. A tool result reaches a model and, very often, a terminal (Codex and
 * Claude Code print tool output in their TUI) or a rendered view (Claude Desktop, Cursor). JSON
 * framing escapes C0 only: ESC sequences would arrive escaped in the JSON but raw in the string
 * the client prints, and C1, bidi overrides and zero-width characters pass JSON untouched. So
 * every string the sandbox controls leaves as terminal-safe text, like the CLI's: multi-line
 * output (stdout, stderr, file content, patches) keeps its newlines and tabs (terminalLines),
 * every other string (file names, hosts, messages) is escaped whole (terminalText). The
 * escaping is lossy on purpose (a backslash stays a backslash); a client that needs a file's
 * exact bytes asks for base64, whose alphabet needs no escaping. Secret values the server read
 * are redacted from everything, as in the CLI.
 */
const MULTILINE = new Set(['stdout', 'stderr', 'content', 'patch', 'stat', 'text']);

export class SafeText {
  constructor(private readonly secrets: Set<string>) {}

  /** One line of text. */
  line(text: string): string {
    return terminalText(this.redact(text));
  }

  /** Text of many lines (newlines and tabs kept). */
  lines(text: string): string {
    return terminalLines(this.redact(text));
  }

  /** A result object with every string made safe, by what its key says it is. */
  value<T>(value: T, key = ''): T {
    if (typeof value === 'string') return (MULTILINE.has(key) ? this.lines(value) : this.line(value)) as T;
    if (Array.isArray(value)) return value.map((item) => this.value(item, key)) as T;
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [name, item] of Object.entries(value)) out[this.line(name)] = this.value(item, name);
      return out as T;
    }
    return value;
  }

  private redact(text: string): string {
    return redact(text, [...this.secrets]);
  }
}
