import { MAX_READ_BYTES } from '../service/task-files.js';
import { characterStart, decodeText, fitContent } from './result-budget.js';

/** A file as the workspace read gave it: its first bytes (up to the read's limit) and its whole size. */
export interface ReadFile {
  path: string;
  content: Buffer;
  size: number;
}

/**
 * What read_file returns for the bytes read, from `offset` on (a page) or from the start: the
 * content that fits one message, a note a model reads, and the data a program reads (_meta).
 * `truncated` says more of the file follows what is shown; `nextOffset` where to read on, while
 * that is within the first MAX_READ_BYTES. A page of text that is cut ends before a character
 * it would split, so that pages put together give the file back.
 */
export function filePage(
  file: ReadFile,
  options: { offset?: number; encoding: 'text' | 'base64' },
): { data: Record<string, unknown>; text: [content: string, note: string] } {
  const { offset, encoding } = options;
  const from = Math.min(offset ?? 0, file.content.length);
  const page = file.content.subarray(from);
  const fitted = fitContent(page, encoding);
  const more = from + fitted.used < file.size;
  const used = encoding === 'text' && more ? characterStart(page, fitted.used) : fitted.used;
  const content = used === fitted.used ? fitted.content : decodeText(page.subarray(0, used));
  const end = from + used;
  const truncated = end < file.size;
  const nextOffset = truncated && end < MAX_READ_BYTES ? end : undefined;
  const data = {
    path: file.path,
    size: file.size,
    truncated,
    encoding,
    shown: used,
    ...(offset !== undefined ? { offset } : {}),
    ...(nextOffset !== undefined ? { nextOffset } : {}),
  };
  const cut = fitted.used < page.length ? ' (cut to fit one MCP message)' : '';
  const shown = offset !== undefined ? `bytes ${from} to ${end} shown${cut}` : truncated ? `only the first ${used} shown${cut}` : '';
  const next =
    nextOffset !== undefined ? `; read on with offset ${nextOffset}` : truncated ? `; bytes past the first ${MAX_READ_BYTES} cannot be read here` : '';
  return { data, text: [content, `(${file.path}: ${file.size} bytes${shown ? `, ${shown}` : ''}${next})`] };
}
