import { describe, expect, it } from 'vitest';
import { characterStart, decodeText, wireBytes } from '../../src/mcp/result-budget.js';
import { terminalLines } from '../../src/domain/terminal-text.js';

/**
 * The fast paths of a big read_file (latin1 for ASCII, escapes counted without a match array)
 * must give exactly what the plain ways gave: the same string, the same count, the same bytes.
 */
const samples: Buffer[] = [
  Buffer.from(''),
  Buffer.from('plain ascii\n\twith "quotes" and \\ backslashes\n'.repeat(50)),
  Buffer.from('ctrl \x1b[2K \x00 \x7f \r\n'),
  Buffer.from('utf-8: é ü 中文 😀 \u202e bidi \u200b zero-width\n'),
  Buffer.from([0x61, 0x80, 0xff, 0xc3, 0x28, 0xe2, 0x82]), // invalid UTF-8 and a cut sequence
  Buffer.from('😀').subarray(0, 2), // a character cut in half
  Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256)),
];

describe('read_file fast paths give what the plain ways gave', () => {
  it('decodeText is toString("utf8")', () => {
    for (const bytes of samples) expect(decodeText(bytes)).toBe(bytes.toString('utf8'));
  });

  it('wireBytes counts what JSON.stringify of the escaped text takes', () => {
    for (const bytes of samples) {
      const text = bytes.toString('utf8');
      expect(wireBytes(text)).toBe(Buffer.byteLength(JSON.stringify(terminalLines(text))));
    }
  });
});

describe('a page of text ends on a character boundary', () => {
  it('backs off to the start of a character the cut would split, never to 0', () => {
    const bytes = Buffer.from('aé😀b'); // a, é (2 bytes), 😀 (4 bytes), b
    const expected = [0, 1, 1, 3, 3, 3, 3, 7, 8];
    for (let at = 0; at <= bytes.length; at += 1) expect(characterStart(bytes, at), `at ${at}`).toBe(expected[at]);
    expect(characterStart(Buffer.from('😀'), 2)).toBe(2); // only one character: shown cut rather than nothing
    expect(characterStart(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80]), 4)).toBe(4); // not UTF-8: cut where asked
  });
});
