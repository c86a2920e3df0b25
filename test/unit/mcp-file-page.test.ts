import { describe, expect, it } from 'vitest';
import { filePage } from '../../src/mcp/file-page.js';
import { MAX_READ_BYTES } from '../../src/service/task-files.js';

/** What the workspace read gives read_file: the file's first bytes up to the limit, and its size (workspace-files.ts). */
const read = (bytes: Buffer, offset = 0, maxBytes = MAX_READ_BYTES) => ({
  path: '/workspace/f',
  content: bytes.subarray(0, Math.min(offset + maxBytes, MAX_READ_BYTES)),
  size: bytes.length,
});

/** Reads a file page by page as a client would, following nextOffset. */
function pages(bytes: Buffer, maxBytes: number, encoding: 'text' | 'base64') {
  const out: { content: string; data: Record<string, unknown>; note: string }[] = [];
  let offset: number | undefined = 0;
  while (offset !== undefined && out.length < 10_000) {
    const { data, text } = filePage(read(bytes, offset, maxBytes), { offset, encoding });
    out.push({ content: text[0], data, note: text[1] });
    offset = data.nextOffset as number | undefined;
  }
  return out;
}

describe('read_file pages', () => {
  it('without an offset, answers as before: the whole file, or its first bytes and where to read on', () => {
    const file = Buffer.from('goodbye world\nhello again\n');
    expect(filePage(read(file), { encoding: 'text' })).toEqual({
      data: { path: '/workspace/f', size: 26, truncated: false, encoding: 'text', shown: 26 },
      text: ['goodbye world\nhello again\n', '(/workspace/f: 26 bytes)'],
    });
    expect(filePage(read(file, 0, 5), { encoding: 'text' })).toEqual({
      data: { path: '/workspace/f', size: 26, truncated: true, encoding: 'text', shown: 5, nextOffset: 5 },
      text: ['goodb', '(/workspace/f: 26 bytes, only the first 5 shown; read on with offset 5)'],
    });
  });

  it('gives the file back page by page, a character never split between two pages', () => {
    const text = 'héllo wörld 😀 ümlaut\n'.repeat(40);
    const bytes = Buffer.from(text);
    for (const size of [1, 2, 3, 4, 5, 7, 64]) {
      const base64Pages = pages(bytes, size, 'base64');
      expect(Buffer.concat(base64Pages.map((p) => Buffer.from(p.content, 'base64'))).equals(bytes)).toBe(true);
      // A page shorter than a character still moves on (it shows the part, as U+FFFD); from 4 bytes on, none is split.
      const textPages = pages(bytes, size, 'text');
      expect(textPages.length).toBeLessThanOrEqual(bytes.length);
      if (size < 4) continue;
      expect(textPages.map((p) => p.content).join('')).toBe(text);
      expect(textPages.some((p) => p.content.includes('\ufffd'))).toBe(false);
      expect(textPages.at(-1)!.data).toMatchObject({ truncated: false, size: bytes.length });
      expect(textPages.at(-1)!.data.nextOffset).toBeUndefined();
    }
    const second = pages(bytes, 64, 'text')[1]!;
    expect(second.note).toMatch(/^\(\/workspace\/f: \d+ bytes, bytes 6\d to 1\d\d shown; read on with offset 1\d\d\)$/);
  });

  it('says so when the offset is past the end, and when the rest lies past what can be read', () => {
    const small = Buffer.from('abc');
    expect(filePage(read(small, 10), { offset: 10, encoding: 'text' }).data).toEqual({
      path: '/workspace/f',
      size: 3,
      truncated: false,
      encoding: 'text',
      shown: 0,
      offset: 10,
    });
    // A file larger than the cap: its last readable page has no next offset, and the note says why.
    const big = { path: '/workspace/big', content: Buffer.alloc(MAX_READ_BYTES, 'a'), size: MAX_READ_BYTES + 100 };
    const last = filePage(big, { offset: MAX_READ_BYTES - 10, encoding: 'text' });
    expect(last.data).toMatchObject({ truncated: true, shown: 10 });
    expect(last.data.nextOffset).toBeUndefined();
    expect(last.text[1]).toMatch(/bytes past the first 8388608 cannot be read here/);
  });

  it('cuts a page whose escapes would not fit one message, and reads on from there', () => {
    const controls = Buffer.alloc(6 * 1024 * 1024, 1);
    const first = filePage(read(controls, 0), { offset: 0, encoding: 'text' });
    expect(first.text[1]).toMatch(/\(cut to fit one MCP message\); read on with offset \d+/);
    expect(first.data.nextOffset).toBe(first.data.shown);
  });
});
