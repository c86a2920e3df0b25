import { describe, expect, it } from 'vitest';
import { renderHomeFile } from '../../src/domain/home-seed.js';

describe('home files of a template', () => {
  const placeholders = new Map([['ANTHROPIC_API_KEY', 'moat-placeholder-anthropic-api-key-0123456789ab']]);

  it("name a bound secret's placeholder, whole or its tail", () => {
    expect(renderHomeFile('k={{placeholder:ANTHROPIC_API_KEY}}', placeholders)).toBe('k=moat-placeholder-anthropic-api-key-0123456789ab');
    expect(renderHomeFile('["{{placeholder:ANTHROPIC_API_KEY:-20}}"]', placeholders)).toBe('["api-key-0123456789ab"]');
  });

  it('give an empty string for a secret that is not bound, and leave other braces alone', () => {
    expect(renderHomeFile('a={{placeholder:OTHER_KEY}};b={{value:X}};c={x}', placeholders)).toBe('a=;b={{value:X}};c={x}');
  });
});
