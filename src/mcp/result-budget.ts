import { isAscii } from 'node:buffer';
import { terminalLines } from '../domain/terminal-text.js';

/**
 * The SDK's stdio clients take messages of at most 10 MiB (STDIO_DEFAULT_MAX_BUFFER_SIZE) and
 * close the whole connection on a longer one. read_file sends a file's content once (the first
 * text item), a command's result its output twice (text and structuredContent, each stream
 * within half of this: captured-output.ts). So a copy is kept to this many bytes as it goes
 * out: escaped for terminals, as a JSON string, in UTF-8.
 */
export const CONTENT_BUDGET = 4 * 1024 * 1024;

/** Characters JSON.stringify escapes with one more byte once terminalLines has run (the only controls it leaves are these two). */
const JSON_ESCAPED = ['"', '\\', '\n', '\t'];

/** Bytes a content string takes in the JSON-RPC line (server.ts escapes it, then JSON does). */
export function wireBytes(content: string): number {
  const escaped = terminalLines(content);
  // JSON adds a backslash to each of JSON_ESCAPED. Counted with indexOf (a native scan per
  // character) rather than a global match, whose array of matches cost 1-3 ms per MiB of lines.
  let escapes = 0;
  for (const char of JSON_ESCAPED) for (let at = escaped.indexOf(char); at >= 0; at = escaped.indexOf(char, at + 1)) escapes += 1;
  return Buffer.byteLength(escaped) + escapes + 2;
}

/**
 * Bytes as text, the same string as `toString('utf8')`: ASCII (most source, logs, base64) is
 * decoded as latin1, a plain copy, where V8's UTF-8 decoder took 4-13 ms for 1 MiB (measured,
 * Node 20); isAscii itself is a SIMD scan of well under 0.1 ms. A megabyte of such text lives in
 * malloc'd memory outside V8's heap, which is why the server keeps what it frees (server-memory.ts):
 * without that, the pages faulted in again cost more than the decode saved.
 */
export function decodeText(bytes: Buffer): string {
  return isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8');
}

/** The content of `bytes` in `encoding`, cut to the first bytes that fit {@link CONTENT_BUDGET}. */
export function fitContent(bytes: Buffer, encoding: 'text' | 'base64', budget = CONTENT_BUDGET): { content: string; used: number } {
  const encode = (part: Buffer) => (encoding === 'base64' ? part.toString('base64') : decodeText(part));
  const measure = (content: string) => (encoding === 'base64' ? content.length + 2 : wireBytes(content));
  // A byte never takes less than one byte on the wire; and a sample's escapes predict the rest's,
  // so a binary file read as text is escaped about once, not once per guess.
  let used = Math.min(bytes.length, encoding === 'base64' ? Math.floor(((budget - 2) * 3) / 4) : budget);
  const sample = Math.min(used, 64 * 1024);
  if (used > sample) used = Math.min(used, Math.floor(((sample * budget) / measure(encode(bytes.subarray(0, sample)))) * 0.9));
  for (;;) {
    const content = encode(bytes.subarray(0, used));
    const size = measure(content);
    if (size <= budget || used === 0) return { content, used };
    // Proportionally shorter, and a little more, since escapes are not spread evenly.
    used = Math.floor(((used * budget) / size) * 0.95);
  }
}

/**
 * Where text cut after `at` bytes should end so as not to split a UTF-8 character: `at`, or the
 * start of a character that begins before `at` and ends after it (at most three bytes back). A
 * page of text then ends before that character and the next page starts with it whole, instead
 * of two pages each showing half of it as U+FFFD. Never 0: a page shows at least one byte.
 */
export function characterStart(bytes: Buffer, at: number): number {
  let lead = at - 1;
  while (lead > 0 && at - lead < 4 && ((bytes[lead] ?? 0) & 0xc0) === 0x80) lead -= 1;
  const byte = bytes[lead] ?? 0;
  const length = byte >= 0xf0 && byte < 0xf8 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
  return lead > 0 && lead + length > at && byte >= 0xc0 ? lead : at;
}
