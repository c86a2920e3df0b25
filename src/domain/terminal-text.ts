/**
 * Making text a sandbox controls (file names, commit messages, host names, rule text, log lines)
 * safe to print on a terminal. An escape sequence in such a string could erase or rewrite the
 * lines the reviewer reads (ESC [2K, ESC [1A), set the window title or write the clipboard
 * (OSC 0, OSC 52), and a bidi override or an invisible character could make a name read as
 * another; a newline in a name could forge a line that looks like moat's own. So every such
 * character is shown as an escape instead: `\x1b`, `\r`, `\u202e`.
 *
 * Escaped: C0 controls, DEL, C1 controls (U+0080–U+009F, which some terminals obey even
 * UTF-8-encoded), and the characters that reorder or hide text: bidi embeddings, overrides,
 * isolates and marks, zero-width characters, the byte-order mark, the line and paragraph
 * separators, the soft hyphen, interlinear annotations and the invisible tag characters.
 * A backslash is left as it is: printable text that merely looks like an escape hides nothing.
 */

/** Everything escaped; `\n` and `\t` are in it and are let through only by {@link terminalLines}. */
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|[\u{e0000}-\u{e007f}]/gu;
const UNSAFE_IN_LINES = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|[\u{e0000}-\u{e007f}]/gu;
/** What JSON.stringify leaves raw but a terminal obeys (it escapes only C0, quote and backslash). */
const UNSAFE_IN_JSON = /[\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|[\u{e0000}-\u{e007f}]/gu;

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
 * For text that is multi-line by nature (a container's output, a diff body, git's --stat); a
 * line in it can look like any other line, so use it only where the reader knows the lines are
 * the sandbox's (or, as a net under a whole result, after its fields went through terminalText).
 */
export function terminalLines(text: string): string {
  return text.replace(UNSAFE_IN_LINES, escapeChar);
}

/**
 * JSON text, safe for a terminal and still the same data: the characters JSON.stringify leaves
 * raw become \u escapes, which any JSON parser reads back as the very same characters. (Outside
 * strings JSON text is plain ASCII, so only string contents change.)
 */
export function terminalJson(json: string): string {
  return json.replace(UNSAFE_IN_JSON, (char) => {
    const code = char.codePointAt(0)!;
    if (code < 0x10000) return `\\u${code.toString(16).padStart(4, '0')}`;
    // An astral character is a surrogate pair in JSON's \u notation.
    const high = Math.floor((code - 0x10000) / 0x400) + 0xd800;
    const low = ((code - 0x10000) % 0x400) + 0xdc00;
    return `\\u${high.toString(16)}\\u${low.toString(16)}`;
  });
}

/** How every line moat itself writes to stderr begins. */
const OWN_PREFIX = 'moat:';

/**
 * A stream of bytes (a container's output, an agent's answer) as terminal-safe text of many lines:
 * decodes UTF-8 across chunk boundaries (a character split between two chunks is escaped, or not,
 * whole) and escapes as {@link terminalLines}. Its lines are the sandbox's and may say anything
 * printable, but none may pass for one of moat's own (they interleave on stderr with moat's notes
 * and errors): a line that starts with `moat:` shows as `\x6doat:`. Bytes that are not UTF-8 show
 * as U+FFFD.
 */
export class TerminalStream {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  private atLineStart = true;
  /** The start of a line, held back until it is known whether it reads `moat:`. */
  private held = '';

  push(chunk: Uint8Array): string {
    return this.lines(this.decoder.decode(chunk, { stream: true }), false);
  }

  end(): string {
    return this.lines(this.decoder.decode(), true);
  }

  private lines(text: string, final: boolean): string {
    let input = this.held + text;
    this.held = '';
    if (!final) {
      const tailStart = input.lastIndexOf('\n') + 1;
      const tail = input.slice(tailStart);
      if ((tailStart > 0 || this.atLineStart) && tail.length < OWN_PREFIX.length && OWN_PREFIX.startsWith(tail)) {
        this.held = tail;
        input = input.slice(0, tailStart);
      }
    }
    if (!input) return '';
    const marked = input.replace(/(^|\n)moat:/g, (match: string, before: string) => (before === '' && !this.atLineStart ? match : `${before}\\x6doat:`));
    this.atLineStart = input.endsWith('\n');
    return terminalLines(marked);
  }
}
