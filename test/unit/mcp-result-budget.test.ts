import { describe, expect, it } from 'vitest';
import { CONTENT_BUDGET, fitContent, wireBytes } from '../../src/mcp/result-budget.js';
import { SafeText } from '../../src/mcp/safe-text.js';

/** What read_file sends must fit one message of the SDK's stdio clients (10 MiB), whatever the file holds. */
describe('read_file content budget', () => {
  const message = (content: string) => {
    const safe = new SafeText(new Set());
    const data = safe.value({ path: '/workspace/f', size: 1, truncated: true, encoding: 'text', content });
    return Buffer.byteLength(
      JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: safe.lines(content) }], structuredContent: data } }),
    );
  };

  it('leaves a file that fits as it is', () => {
    const text = 'hello "world"\n\tline\n'.repeat(1000);
    expect(fitContent(Buffer.from(text), 'text')).toEqual({ content: text, used: Buffer.byteLength(text) });
    expect(wireBytes(text)).toBe(JSON.stringify(text).length);
  });

  it('cuts text whose escapes would overflow one message, and the message then fits', () => {
    for (const bytes of [Buffer.alloc(8 * 1024 ** 2), Buffer.alloc(8 * 1024 ** 2, '\u202e'), Buffer.alloc(8 * 1024 ** 2, '"\\\n')]) {
      const { content, used } = fitContent(bytes, 'text');
      expect(used).toBeLessThan(bytes.length);
      expect(used).toBeGreaterThan(0);
      expect(wireBytes(content)).toBeLessThanOrEqual(CONTENT_BUDGET);
      expect(message(content)).toBeLessThan(10 * 1024 * 1024);
    }
  });

  it('cuts base64 to what fits', () => {
    const { content, used } = fitContent(Buffer.alloc(8 * 1024 ** 2, 7), 'base64');
    expect(content.length).toBeLessThanOrEqual(CONTENT_BUDGET);
    expect(used).toBeGreaterThan(2.5 * 1024 ** 2);
    expect(Buffer.from(content, 'base64').length).toBe(used);
  });
});
