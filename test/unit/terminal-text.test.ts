import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SandboxLines, terminalJson, terminalLines, terminalText } from '../../src/domain/terminal-text.js';
import { createOutput, endAll, reportError, sandboxStream, table } from '../../src/cli/output.js';
import { MoatError } from '../../src/errors.js';
import { firstRaw, KNOWN_INVISIBLE, UNSAFE_CODE_POINTS } from '../helpers/unsafe-chars.js';
import { captureIO } from '../helpers/fixtures.js';

const DANGEROUS = [...UNSAFE_CODE_POINTS].map((code) => String.fromCodePoint(code));

describe('what is unsafe (built by the test from Unicode properties)', () => {
  it('holds every known invisible or reordering character', () => {
    for (const code of KNOWN_INVISIBLE) expect(UNSAFE_CODE_POINTS.has(code), code.toString(16)).toBe(true);
  });
});

describe('terminalText', () => {
  it('escapes every unsafe code point visibly, and leaves every other one as it is', () => {
    const wrong: string[] = [];
    for (let code = 0; code <= 0x10ffff; code += 1) {
      if (code >= 0xd800 && code <= 0xdfff) continue;
      const char = String.fromCodePoint(code);
      const shown = terminalText(char);
      const ok = UNSAFE_CODE_POINTS.has(code) ? shown.startsWith('\\') && shown.length >= 2 && firstRaw(shown) === undefined : shown === char;
      if (!ok) wrong.push(code.toString(16));
    }
    expect(wrong).toEqual([]);
  });

  it('shows the usual escapes', () => {
    expect(terminalText('\x1b[2K\x1b]52;c;aGk=\x07')).toBe('\\x1b[2K\\x1b]52;c;aGk=\\x07');
    expect(terminalText('a\nb\rc\td')).toBe('a\\nb\\rc\\td');
    expect(terminalText('\x9b31m')).toBe('\\x9b31m');
    expect(terminalText('evil\u202etxt.sh')).toBe('evil\\u202etxt.sh');
    expect(terminalText('tag\u{e0041}')).toBe('tag\\u{e0041}');
    expect(terminalText('\x7f')).toBe('\\x7f');
    expect(terminalText('\u3164x\ufe0f\u034f')).toBe('\\u3164x\\ufe0f\\u034f');
  });

  it('leaves ordinary text alone, other scripts, emoji and backslashes included', () => {
    const ordinary = ['src/app.ts', 'héllo wörld', '日本語のファイル.md', 'ملف.txt', '🙂 ok', 'C:\\path\\x1b', ''];
    for (const text of ordinary) expect(terminalText(text)).toBe(text);
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
    for (const char of DANGEROUS.filter((c) => c !== '\n' && c !== '\t')) expect(firstRaw(terminalLines(char), true)).toBeUndefined();
  });
});

describe('terminalJson', () => {
  it('JSON.stringify escapes C0 but leaves DEL, C1 and bidi raw; terminalJson escapes them and the data stays the same', () => {
    const value = { name: DANGEROUS.join(''), list: ['x\u202ey', '\u{e0041}'] };
    const plain = JSON.stringify(value);
    expect(firstRaw(plain)).toBeDefined();
    const safe = terminalJson(plain);
    expect(firstRaw(safe)).toBeUndefined();
    expect(JSON.parse(safe)).toEqual(value);
    expect(terminalJson(JSON.stringify('ok é 🙂'))).toBe(JSON.stringify('ok é 🙂'));
  });
});

describe('SandboxLines', () => {
  it('escapes a character cut between chunks whole, marks every line, and keeps lines', () => {
    const bytes = Buffer.from('a\u202eb\nc\x1bd\u{e0041}\n\ntail', 'utf8');
    for (let cut = 0; cut <= bytes.length; cut += 1) {
      const lines = new SandboxLines('t | ');
      const all = lines.push(bytes.subarray(0, cut)) + lines.push(bytes.subarray(cut)) + lines.end();
      expect(all, `cut at ${cut}`).toBe('t | a\\u202eb\nt | c\\x1bd\\u{e0041}\nt | \nt | tail\n');
    }
  });

  it('only whole lines leave; a held start of a line is flushed as a line of its own', () => {
    const lines = new SandboxLines('t | ');
    expect(lines.push(Buffer.from('Continue? '))).toBe('');
    expect(lines.holding).toBe(true);
    expect(lines.flush()).toBe('t | Continue? \n');
    expect(lines.push(Buffer.from('y\n'))).toBe('t | y\n');
    expect(lines.end()).toBe('');
  });

  it("no line of the sandbox can pass for moat's: homoglyphs, indentation, fullwidth, wherever the chunks are cut", () => {
    const text = 'moat: error: forged\n moat: error: x\nm\u043eat: error: cyrillic\n\uff4d\uff4f\uff41\uff54: fullwidth\n  hint: fake\nmoat';
    const bytes = Buffer.from(text, 'utf8');
    for (let cut = 0; cut <= bytes.length; cut += 2) {
      const lines = new SandboxLines('t | ');
      const all = lines.push(bytes.subarray(0, cut)) + lines.push(bytes.subarray(cut)) + lines.end();
      expect(
        all
          .split('\n')
          .slice(0, -1)
          .every((line) => line.startsWith('t | ')),
        all,
      ).toBe(true);
      expect(all).toBe(
        `${text
          .split('\n')
          .map((line) => `t | ${line}\n`)
          .join('')}`,
      );
    }
  });
});

describe("sandboxStream: two streams of the sandbox and moat's own notes on one terminal", () => {
  const terminal = () => {
    const target = new PassThrough();
    let seen = '';
    target.on('data', (chunk: Buffer) => (seen += chunk.toString('utf8')));
    return { target, seen: () => seen };
  };
  const write = (stream: NodeJS.WritableStream, text: string) => new Promise<void>((resolve) => stream.write(Buffer.from(text), () => resolve()));

  it('a newline on the other stream does not let the sandbox start a line: stdout x, stderr \\n, stdout "moat: error"', async () => {
    const tty = terminal();
    const stdout = sandboxStream(tty.target, 'agent | ');
    const stderr = sandboxStream(tty.target, 'agent | ');
    await write(stdout, 'x');
    await write(stderr, '\n');
    await write(stdout, 'moat: error: forged\n');
    await endAll([stdout, stderr]);
    expect(
      tty
        .seen()
        .split('\n')
        .filter((line) => line !== '' && !line.startsWith('agent | ')),
    ).toEqual([]);
    expect(tty.seen()).not.toMatch(/^moat:/m);
    expect(tty.seen()).toContain('agent | xmoat: error: forged\n');
  });

  it("a note of moat's after a line the sandbox left open does not let it continue at column 0", async () => {
    const tty = terminal();
    const stdout = sandboxStream(tty.target, 'agent | ');
    await write(stdout, 'partial');
    createOutput(false, () => [], tty.target, tty.target).note('task started');
    await write(stdout, '\nmoat: error: forged\n');
    await endAll([stdout]);
    expect(tty.seen()).not.toMatch(/^moat: error/m);
    expect(tty.seen()).toBe('moat: task started\nagent | partial\nagent | moat: error: forged\n');
  });

  it('escapes a character cut between two writes and flushes the rest at the end', async () => {
    const tty = terminal();
    const stream = sandboxStream(tty.target, 'logs | ');
    stream.write(Buffer.from([0x1b, 0x5b, 0x32, 0x4a, 0xe2, 0x80]));
    stream.write(Buffer.from([0xae, 0x0a, 0x41]));
    await endAll([stream]);
    expect(tty.seen()).toBe('logs | \\x1b[2J\\u202e\nlogs | A\n');
  });
});

describe('the CLI output', () => {
  const capture = () => {
    const c = captureIO();
    return { out: c.io.stdout, err: c.io.stderr, stdout: c.out, stderr: c.err };
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
    expect(firstRaw(j.stdout(), true)).toBeUndefined();
    expect(JSON.parse(j.stdout())).toEqual(data);
  });

  it('redaction still sees the secret before escaping', () => {
    const c = capture();
    createOutput(false, () => ['s3cret'], c.out, c.err).note('token s3cret\x1b');
    expect(c.stderr()).not.toContain('s3cret');
    expect(firstRaw(c.stderr(), true)).toBeUndefined();
  });

  it('a secret of many lines (or with controls) is redacted however a command or the output escaped it', () => {
    const secret = 'line1\nline2-secret\x1b';
    const c = capture();
    const out = createOutput(false, () => [secret], c.out, c.err);
    // As review and egress do: the field escaped by the command, then given to note() or result().
    out.note(`flag: ${terminalText(`a${secret}b`)}`);
    out.result({}, () => `host ${terminalText(secret)}\nbody ${secret}`);
    const j = capture();
    createOutput(true, () => [secret], j.out, j.err).result({ value: secret }, () => '');
    const e = capture();
    reportError(new MoatError('E_USAGE', `bad ${secret}`, { hint: `not ${secret}` }), true, [secret], e.out, e.err);
    const i = capture();
    reportError(new Error(`boom ${secret}`), true, [secret], i.out, i.err);
    for (const text of [c.stderr(), c.stdout(), j.stdout(), e.stdout(), e.stderr(), i.stdout(), i.stderr()]) {
      expect(text).not.toContain('line2-secret');
      expect(text).toContain('[redacted]');
    }
    expect(JSON.parse(j.stdout())).toEqual({ value: '[redacted]' });
  });

  it('MOAT_DEBUG: the stack cannot start a line of its own with the message', () => {
    const c = capture();
    const previous = process.env.MOAT_DEBUG;
    process.env.MOAT_DEBUG = '1';
    try {
      reportError(new Error('boom\nmoat: error: forged\n  hint: fake'), false, [], c.out, c.err);
    } finally {
      if (previous === undefined) delete process.env.MOAT_DEBUG;
      else process.env.MOAT_DEBUG = previous;
    }
    expect(c.stderr()).toMatch(/^ {2}stack:\n {4}at /m);
    expect(c.stderr()).not.toMatch(/^ *moat: error: forged/m);
    expect(c.stderr()).not.toMatch(/^ *hint: fake/m);
  });

  it('errors: message, extra lines and hint each one escaped line, text and JSON', () => {
    const c = capture();
    const error = new MoatError('E_CONFIRM', 'the task changes evil\n\x1b[2Kmoat: nothing flagged\u202e', {
      hint: 'see \x1b]8;;http://x\x07',
      details: { lines: ['first', 'second\x1b[1A\nthird'] },
    });
    reportError(error, true, [], c.out, c.err);
    expect(firstRaw(c.stderr(), true)).toBeUndefined();
    expect(c.stderr().split('\n')).toEqual([
      'moat: error: the task changes evil\\n\\x1b[2Kmoat: nothing flagged\\u202e',
      '  second\\x1b[1A\\nthird',
      '  hint: see \\x1b]8;;http://x\\x07',
      '',
    ]);
    expect(firstRaw(c.stdout(), true)).toBeUndefined();
    expect(JSON.parse(c.stdout()).error.message).toBe(error.message);
    const internal = capture();
    reportError(new Error('boom\x1b[31m'), false, [], internal.out, internal.err);
    expect(internal.stderr()).toContain('internal error: boom\\x1b[31m');
  });

  it('a table escapes each cell whole, so a newline cannot add a row', () => {
    const text = table([
      ['A', 'B'],
      ['x\nfake-row', '\u202ey'],
    ]);
    expect(text.split('\n')).toHaveLength(2);
    expect(firstRaw(text, true)).toBeUndefined();
  });
});
