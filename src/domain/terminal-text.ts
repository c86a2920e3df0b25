/**
 * Making text a sandbox controls (file names, commit messages, host names, rule text, log lines)
 * safe to print on a terminal. An escape sequence in such a string could erase or rewrite the
 * lines the reviewer reads (ESC [2K, ESC [1A), set the window title or write the clipboard
 * (OSC 0, OSC 52), and a bidi override or an invisible character could make a name read as
 * another; a newline in a name could forge a line that looks like moat's own. So every such
 * character is shown as an escape instead: `\x1b`, `\r`, `\u202e`.
 *
 * Escaped, by Unicode property (so a new invisible character in a later Unicode version is
 * caught by the runtime's tables, not by a list kept here): controls (Cc: C0, DEL, C1, which some
 * terminals obey even UTF-8-encoded), format characters (Cf: bidi embeddings, overrides, isolates
 * and marks, zero-width characters, the byte-order mark, the soft hyphen, tag characters), the
 * line and paragraph separators (Zl, Zp) and every default-ignorable code point (variation
 * selectors, the Hangul fillers U+115F, U+1160, U+3164, U+FFA0, and the rest a terminal draws as
 * nothing). A backslash is left as it is: printable text that merely looks like an escape hides nothing.
 */

/** The one definition of what a terminal must not get raw; the three escapings below differ only in what they let through. */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/gu;

/** {@link UNSAFE} but newlines and tabs (set subtraction): a file of clean lines costs one scan, not one callback per line. */
const UNSAFE_IN_LINES = new RegExp(`[${UNSAFE.source}--[\\n\\t]]`, 'gv');

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(char: string): string {
  const named = NAMED[char];
  if (named) return named;
  const code = char.codePointAt(0)!;
  if (code < 0x100) return `\\x${code.toString(16).padStart(2, '0')}`;
  if (code < 0x10000) return `\\u${code.toString(16).padStart(4, '0')}`;
  return `\\u{${code.toString(16)}}`;
}

/**
 * One line of text, safe for a terminal: every control and every character that hides or
 * reorders text is shown escaped, newlines and tabs included. For names, hosts, messages:
 * anything printed inside a line of moat's own.
 */
export function terminalText(text: string): string {
  return text.replace(UNSAFE, escapeChar);
}

/**
 * Text of many lines, safe for a terminal: as {@link terminalText}, but newlines and tabs stay.
 * For text that is multi-line by nature (a diff body, git's --stat); a line in it can look like
 * any other line, so use it only where the reader knows the lines are the sandbox's (or, as a net
 * under a whole result, after its fields went through terminalText). A stream of the sandbox's
 * lines that interleaves with moat's own goes through {@link SandboxLines} instead.
 */
export function terminalLines(text: string): string {
  return text.replace(UNSAFE_IN_LINES, escapeChar);
}

/**
 * JSON text, safe for a terminal and still the same data: the characters JSON.stringify leaves
 * raw become \u escapes, which any JSON parser reads back as the very same characters. C0 is let
 * through: JSON.stringify escapes it inside strings, and outside them it is only the layout's
 * newlines and spaces.
 */
export function terminalJson(json: string): string {
  return json.replace(UNSAFE, (char) => {
    const code = char.codePointAt(0)!;
    if (code < 0x20) return char;
    if (code < 0x10000) return `\\u${code.toString(16).padStart(4, '0')}`;
    // An astral character is a surrogate pair in JSON's \u notation.
    const high = Math.floor((code - 0x10000) / 0x400) + 0xd800;
    const low = ((code - 0x10000) % 0x400) + 0xdc00;
    return `\\u${high.toString(16)}\\u${low.toString(16)}`;
  });
}

/**
 * A stream of bytes a sandbox wrote (a container's output, an agent's answer), as lines a reader
 * can tell from moat's own, like docker compose's `name | `: every line starts with the prefix,
 * and the rest is escaped as {@link terminalLines}. Rather than guess which sandbox lines could
 * pass for moat's (`moat:` at column 0, or a homoglyph of it, or after a newline sent on the
 * other stream that shares the terminal), no sandbox line starts without the mark.
 *
 * Only whole lines leave: the start of a line is held until its newline (or {@link flush}, or
 * {@link end}), and then ends with a newline moat adds. So the terminal is never left in the
 * middle of a sandbox line, and nothing written after it (moat's notes, the other stream's lines)
 * can continue a line the sandbox began. Decodes UTF-8 across chunk boundaries; bytes that are
 * not UTF-8 show as U+FFFD.
 */
export class SandboxLines {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  /** The start of a line, held until its end is known. */
  private partial = '';

  /** @param prefix what every line starts with, e.g. `task | `; moat's own text, printed as it is. */
  constructor(private readonly prefix: string) {}

  /** The whole lines the chunk completes, each marked and escaped; the rest is held. */
  push(chunk: Uint8Array): string {
    const text = this.partial + this.decoder.decode(chunk, { stream: true });
    const cut = text.lastIndexOf('\n') + 1;
    this.partial = text.slice(cut);
    return this.mark(text.slice(0, cut));
  }

  /** Whether a line's start is held (the caller may {@link flush} it after a pause). */
  get holding(): boolean {
    return this.partial !== '';
  }

  /** The held start of a line, as a line of its own: a prompt or progress without a newline still shows. */
  flush(): string {
    const text = this.partial;
    this.partial = '';
    return text ? this.mark(`${text}\n`) : '';
  }

  /** Everything left, a character cut at the end included. */
  end(): string {
    this.partial += this.decoder.decode();
    return this.flush();
  }

  /** Lines that end in a newline, each marked and escaped. */
  private mark(lines: string): string {
    if (!lines) return '';
    return terminalLines(lines)
      .split('\n')
      .slice(0, -1)
      .map((line) => `${this.prefix}${line}\n`)
      .join('');
  }
}
