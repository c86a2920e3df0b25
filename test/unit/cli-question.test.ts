import { describe, expect, it } from 'vitest';
import { createOutput } from '../../src/cli/output.js';
import { confirm } from '../../src/cli/prompt.js';

/** The confirmation question (merge, apply, rm) is written as every other line: escaped, secrets redacted. */
describe('a question on the terminal', () => {
  const secret = 's3cr3t-Value';
  const out = createOutput(false, () => [secret]);

  it('is one line, escaped, with secrets redacted', () => {
    const question = out.question(`the task changes .github/workflows/ci-\x1b]0;pwned\x07\u202e.yml\nmoat: FORGED ${secret}. Continue?`);
    expect(question.startsWith('moat: the task changes')).toBe(true);
    expect(question).not.toContain('\n');
    expect(question).not.toContain('\x1b');
    expect(question).not.toContain('\x07');
    expect(question).not.toContain('\u202e');
    expect(question).not.toContain(secret);
    expect(question).toContain('moat: FORGED');
    expect(question.endsWith('. Continue?')).toBe(true);
  });

  it('a secret that escaping changes is still redacted', () => {
    const tricky = createOutput(false, () => ['ab\x1bcd-secret']);
    expect(tricky.question('value ab\x1bcd-secret here')).not.toMatch(/ab.{1,4}cd-secret/);
  });

  it('is asked only of a terminal: without one the answer is no', async () => {
    const asked: string[] = [];
    const recording = { ...out, question: (line: string) => (asked.push(line), out.question(line)) };
    // Under vitest stdin is no terminal.
    expect(await confirm(recording, 'Continue?')).toBe(false);
    expect(asked).toEqual(['Continue?']);
  });
});
