import { describe, expect, it } from 'vitest';
import { jsonLine } from '../../src/mcp/stdio-transport.js';

const line = (message: unknown) => [...jsonLine(message)].join('');

/** The stdio transport writes long strings a slice at a time: the line must be exactly JSON.stringify's. */
describe('moat mcp message line', () => {
  it('is JSON.stringify of the message and a newline, whatever the long strings hold', () => {
    const long = (unit: string) => unit.repeat(Math.ceil(300_000 / unit.length));
    const surrogateAtEveryCut = 'a'.repeat(32 * 1024 - 1) + '😀'.repeat(40_000);
    const messages = [
      { jsonrpc: '2.0', id: 1, result: { content: [] } },
      {
        jsonrpc: '2.0',
        id: 2,
        result: {
          content: [
            { type: 'text', text: long('line of text "quoted" \\ \t\n') },
            { type: 'text', text: '(note)' },
          ],
          _meta: { x: 1 },
        },
      },
      { jsonrpc: '2.0', id: 3, result: { content: [{ type: 'text', text: long('\u0000\u001b\u007f\u2028é😀') }] } },
      { a: surrogateAtEveryCut, b: [long('\ud800'), 'short', long('x\udc00y')], c: long('\u0000moat-long-0\u0000') },
      { text: 'x'.repeat(256 * 1024), toJSON: undefined, n: null, u: undefined },
    ];
    for (const message of messages) expect(line(message)).toBe(`${JSON.stringify(message)}\n`);
  });

  it('writes a long string in slices, not as one string', () => {
    const pieces = [...jsonLine({ result: { text: 'x'.repeat(1024 * 1024) } })];
    expect(pieces.length).toBeGreaterThan(16);
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThanOrEqual(64 * 1024);
  });
});
