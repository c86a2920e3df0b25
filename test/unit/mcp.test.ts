import { describe, expect, it } from 'vitest';
import { workspacePath } from '../../src/domain/workspace-path.js';
import { CapturedOutput } from '../../src/mcp/captured-output.js';
import { checkArgumentNames, nameFromTitle } from '../../src/mcp/policy.js';
import { SafeText } from '../../src/mcp/safe-text.js';
import { wireBytes } from '../../src/mcp/result-budget.js';
import { validateTaskName } from '../../src/domain/task-name.js';

describe('mcp: pure parts', () => {
  it('keeps workspace paths inside the workspace', () => {
    expect(workspacePath('src/a.ts')).toBe('/workspace/src/a.ts');
    expect(workspacePath('./src//a.ts')).toBe('/workspace/src/a.ts');
    expect(workspacePath('/workspace/src/a.ts')).toBe('/workspace/src/a.ts');
    expect(workspacePath('.')).toBe('/workspace');
    for (const bad of [
      '',
      '../a',
      'a/../../b',
      'a/..',
      '/etc/passwd',
      '/workspace2',
      '/workspace/../etc',
      'a\0b',
      'a\x1bb',
      'a\u202eb',
      'a\nb',
      'x'.repeat(5000),
    ]) {
      expect(() => workspacePath(bad), JSON.stringify(bad.slice(0, 20))).toThrow(/path/);
    }
  });

  it('names tasks from titles in the task-name alphabet', () => {
    for (const title of ['Fix the login bug', '\u202eevil\x1b]0;x\x07', 'ÄÖÜ café', 'x'.repeat(200), '--option', 'a--b']) {
      const name = nameFromTitle(title)!;
      expect(validateTaskName(name)).toBe(name);
    }
    expect(nameFromTitle('Fix the login bug')).toMatch(/^fix-the-login-bug-[0-9a-f]{4}$/);
    expect(nameFromTitle('!!!')).toBeUndefined();
  });

  it("refuses widening arguments with the human's step, and reports other unknown ones", () => {
    expect(() => checkArgumentNames('run_command', { task: 'a', env: {} }, ['task'])).toThrow(/refused over MCP/);
    expect(() => checkArgumentNames('run_command', { task: 'a', Allow: [] }, ['task'])).toThrow(/refused over MCP/);
    expect(checkArgumentNames('run_command', { task: 'a', bogus: 1 }, ['task'])).toEqual(['bogus']);
  });

  it('keeps the first and last parts of a long output and counts the rest', () => {
    const out = new CapturedOutput(10);
    out.write(Buffer.from('0123456789'));
    out.write(Buffer.from('abcdefghij'));
    out.end();
    const text = out.text();
    expect(text).toMatchObject({ bytes: 20, droppedBytes: 10 });
    expect(text.text).toBe('01234\n[… 10 of 20 bytes left out …]\nfghij');
    const small = new CapturedOutput(10);
    small.write(Buffer.from('abc'));
    expect(small.text()).toEqual({ text: 'abc', bytes: 3, droppedBytes: 0 });
  });

  it('cuts an output further in the middle when its escapes would not fit one message', () => {
    // 1 MiB of controls: each shows as \x01, five bytes in JSON; the first and last parts stay.
    const out = new CapturedOutput(1024 * 1024);
    out.write(Buffer.concat([Buffer.from('FIRST'), Buffer.alloc(1024 * 1024, 1), Buffer.from('LAST')]));
    out.end();
    const budget = 1024 * 1024;
    const text = out.text(budget);
    expect(wireBytes(text.text)).toBeLessThanOrEqual(budget);
    expect(wireBytes(text.text)).toBeGreaterThan(budget / 2);
    expect(text.text.startsWith('FIRST')).toBe(true);
    expect(text.text.endsWith('LAST')).toBe(true);
    expect(text.bytes).toBe(1024 * 1024 + 9);
    expect(text.text).toContain(`[… ${text.droppedBytes} of ${text.bytes} bytes left out …]`);
  });

  it('escapes what the sandbox controls and redacts secrets', () => {
    const safe = new SafeText(new Set(['sk-secret-value']));
    const value = safe.value({ stdout: 'a\n\x1b[2Kb\tc', path: 'x\ny\u202e', nested: [{ content: 'k=sk-secret-value\n' }] });
    expect(value).toEqual({ stdout: 'a\n\\x1b[2Kb\tc', path: 'x\\ny\\u202e', nested: [{ content: 'k=[redacted]\n' }] });
  });
});
