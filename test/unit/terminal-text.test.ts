import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { TerminalStream, terminalJson, terminalLines, terminalText } from '../../src/domain/terminal-text.js';
import { createOutput, escapedStream, reportError, table } from '../../src/cli/output.js';
import { MoatError } from '../../src/errors.js';

/** Every character a terminal obeys or that hides or reorders text. */
const DANGEROUS = [
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i)),
  '\x7f',
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(0x80 + i)),
  '\u00ad', '\u061c', '\u180e', '\u200b', '\u200c', '\u200d', '\u200e', '\u200f', '\u2028', '\u2029',
  '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2060', '\u2066', '\u2067', '\u2068', '\u2069', '\ufeff', '\ufff9', '\ufffb',
  '\u{e0001}', '\u{e0041}', '\u{e007f}',
];
// Anything of these left in one line of printed text is a failure; in text of many lines, LF and TAB may stay.
const RAW = /[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|[\u{e0000}-\u{e007f}]/u;
const RAW_LINES = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|[\u{e0000}-\u{e007f}]/u;

describe('terminalText', () => {
  it.each(DANGEROUS.map((c) => [c]))('escapes %j visibly', (char) => {
    const shown = terminalText(`a${char}b`);
    expect(shown).not.toMatch(RAW);
    expect(shown.length).toBeGreaterThan(3);
    expect(shown.startsWith('a\\') && shown.endsWith('b')).toBe(true);
  });

  it('shows the usual escapes', () => {
    expect(terminalText('\x1b[2K\x1b]52;c;aGk=\x07')).toBe('\\x1b[2K\\x1b]52;c;aGk=\\x07');
    expect(terminalText('a\nb\rc\td')).toBe('a\\nb\\rc\\td');
    expect(terminalText('\x9b31m')).toBe('\\x9b31m');
    expect(terminalText('evil\u202etxt.sh')).toBe('evil\\u202etxt.sh');
    expect(terminalText('tag\u{e0041}')).toBe('tag\\u{e0041}');
    expect(terminalText('\x7f')).toBe('\\x7f');
  });

  it('leaves ordinary text alone, other scripts, emoji and backslashes included', () => {
    for (const text of ['src/app.ts', 'héllo wörld', '日本語のファイル.md', 'ملف.txt', '🙂 ok', 'C:\\path\\x1b', '']) expect(terminalText(text)).toBe(text);
  });

  it('is idempotent: escaping twice changes nothing more (the output and the commands may both escape)', () => {
    const once = terminalText(DANGEROUS.join(''));
    expect(terminalText(once)).toBe(once);
    expect(terminalLines(once)).toBe(once);
  });
});

describe('terminalLines', () => {
  it('keeps newlines and tabs, escapes the rest', () => {
    expect(terminalLines('line 1\n\tline 2\r\n\x1b[1Aup\u202e')).toBe('line 1\n\tline 2\\r\n\\x1b[1Aup\\u202e');
    for (const char of DANGEROUS.filter((c) => c !== '\n' && c !== '\t')) expect(terminalLines(char)).not.toMatch(RAW_LINES);
  });
});

describe('terminalJson', () => {
  it('JSON.stringify escapes C0 but leaves DEL, C1 and bidi raw; terminalJson escapes them and the data stays the same', () => {
    const value = { name: DANGEROUS.join(''), list: ['x\u202ey', '\u{e0041}'] };
    const plain = JSON.stringify(value);
    expect(plain).toMatch(RAW);
    const safe = terminalJson(plain);
    expect(safe).not.toMatch(RAW);
    expect(JSON.parse(safe)).toEqual(value);
    expect(terminalJson(JSON.stringify('ok é 🙂'))).toBe(JSON.stringify('ok é 🙂'));
  });
});

describe('TerminalStream', () => {
  it('escapes a character cut between chunks whole, and keeps lines', () => {
    const bytes = Buffer.from('a\u202eb\nc\x1bd\u{e0041}\n', 'utf8');
    let all = '';
    for (let cut = 0; cut <= bytes.length; cut += 1) {
      const stream = new TerminalStream();
      all = stream.push(bytes.subarray(0, cut)) + stream.push(bytes.subarray(cut)) + stream.end();
      expect(all).toBe('a\\u202eb\nc\\x1bd\\u{e0041}\n');
    }
  });

  it('a line of the stream never starts like one of moat\'s, wherever the chunks are cut', () => {
    const bytes = Buffer.from('moat: forged\nok moat: fine\nmoat:\nmoa\n\u202emoat: x\nmoat', 'utf8');
    const expected = '\\x6doat: forged\nok moat: fine\n\\x6doat:\nmoa\n\\u202emoat: x\nmoat';
    for (let cut = 0; cut <= bytes.length; cut += 1) {
      for (let second = cut; second <= bytes.length; second += 3) {
        const stream = new TerminalStream();
        const all = stream.push(bytes.subarray(0, cut)) + stream.push(bytes.subarray(cut, second)) + stream.push(bytes.subarray(second)) + stream.end();
        expect(all, `cut at ${cut} and ${second}`).toBe(expected);
      }
    }
  });

  it('escapedStream writes the escaped text to its target', async () => {
    const target = new PassThrough();
    let seen = '';
    target.on('data', (chunk: Buffer) => (seen += chunk.toString('utf8')));
    const stream = escapedStream(target);
    stream.write(Buffer.from([0x1b, 0x5b, 0x32, 0x4a, 0xe2, 0x80]));
    stream.write(Buffer.from([0xae, 0x0a]));
    await new Promise((resolve) => stream.end(resolve));
    expect(seen).toBe('\\x1b[2J\\u202e\n');
  });
});

describe('the CLI output', () => {
  const capture = () => {
    const out = new PassThrough();
    const err = new PassThrough();
    let stdout = '';
    let stderr = '';
    out.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    err.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    return { out, err, stdout: () => stdout, stderr: () => stderr };
  };

  it('a note is one line however many newlines it holds', () => {
    const c = capture();
    createOutput(false, () => [], c.out, c.err).note('flag: x\nmoat: all clear\x1b[1A');
    expect(c.stderr()).toBe('moat: flag: x\\nmoat: all clear\\x1b[1A\n');
  });

  it('a result keeps its lines, escapes every control a command forgot; JSON stays the same data', () => {
    const c = capture();
    createOutput(false, () => [], c.out, c.err).result({}, () => 'a\x1b]0;title\x07\nb\u202e');
    expect(c.stdout()).toBe('a\\x1b]0;title\\x07\nb\\u202e\n');
    const j = capture();
    const data = { host: 'x\u202e\x9b\x1b.example' };
    createOutput(true, () => [], j.out, j.err).result(data, () => '');
    expect(j.stdout()).not.toMatch(RAW_LINES);
    expect(JSON.parse(j.stdout())).toEqual(data);
  });

  it('redaction still sees the secret before escaping', () => {
    const c = capture();
    createOutput(false, () => ['s3cret'], c.out, c.err).note('token s3cret\x1b');
    expect(c.stderr()).not.toContain('s3cret');
    expect(c.stderr()).not.toMatch(RAW_LINES);
  });

  it('errors: message, extra lines and hint each one escaped line, text and JSON', () => {
    const c = capture();
    const error = new MoatError('E_CONFIRM', 'the task changes evil\n\x1b[2Kmoat: nothing flagged\u202e', { hint: 'see \x1b]8;;http://x\x07', details: { lines: ['first', 'second\x1b[1A\nthird'] } });
    reportError(error, true, [], c.out, c.err);
    expect(c.stderr()).not.toMatch(RAW_LINES);
    expect(c.stderr().split('\n')).toEqual([
      'moat: error: the task changes evil\\n\\x1b[2Kmoat: nothing flagged\\u202e',
      '  second\\x1b[1A\\nthird',
      '  hint: see \\x1b]8;;http://x\\x07',
      '',
    ]);
    expect(c.stdout()).not.toMatch(RAW_LINES);
    expect(JSON.parse(c.stdout()).error.message).toBe(error.message);
    const internal = capture();
    reportError(new Error('boom\x1b[31m'), false, [], internal.out, internal.err);
    expect(internal.stderr()).toContain('internal error: boom\\x1b[31m');
  });

  it('a table escapes each cell whole, so a newline cannot add a row', () => {
    const text = table([['A', 'B'], ['x\nfake-row', '\u202ey']]);
    expect(text.split('\n')).toHaveLength(2);
    expect(text).not.toMatch(RAW_LINES);
  });
});
