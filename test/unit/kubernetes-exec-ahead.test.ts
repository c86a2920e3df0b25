import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { commandFrame } from '../../src/engine/kubernetes-exec-ahead.js';
import { shellWord, WAIT_SCRIPT } from '../../src/engine/exec-ahead-script.js';
import { stdinFrame } from '../../src/engine/kubernetes-exec.js';
import { StatusLine, statusMark } from '../../src/engine/exec-ahead-status.js';

const MARK = statusMark();

/** Runs the waiting shell as the sandbox would (frames without their channel byte), with stdin left open unless told. */
async function waiter(frames: Buffer[], options: { end?: boolean } = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn('/bin/sh', ['-c', WAIT_SCRIPT, 'moat-wait'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  for (const frame of frames) child.stdin.write(frame.subarray(1));
  if (options.end) child.stdin.end();
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  child.stdin.destroy();
  return { code, out, err };
}

describe('an exec opened ahead (a shell waiting for one command)', () => {
  it('says it runs, then runs exactly the words it is sent, with the stdin frames after them, and ends with its status', async () => {
    const words = ['sh', '-c', 'printf "%s|" "$@"; cat; exit 7', 'zero', 'it\'s "x" $HOME `id` $(id)\nnext', 'a b', ''];
    const { code, out, err } = await waiter([commandFrame(MARK, words), stdinFrame('in\n'), stdinFrame(Buffer.alloc(0))]);
    expect(code).toBe(7);
    // No expansion of any kind: each word arrives as sent; the status line last, on both channels.
    expect(out).toBe(`R${words.slice(4).join('|')}|in\n${MARK}7\n`);
    expect(err).toBe(`${MARK}7\n`);
  });

  it('ends with the command although its stdin stays open, the command in a process group of its own', async () => {
    const { code, out } = await waiter([commandFrame(MARK, ['sh', '-c', 'echo "$$ $(ps -o pgid= -p $$)"; exit 3'])]);
    expect(code).toBe(3);
    expect(out.endsWith(`${MARK}3\n`)).toBe(true);
    const [pid, pgid] = out.slice(1, -`${MARK}3\n`.length).trim().split(/\s+/);
    expect(pgid).toBe(pid);
  });

  it('runs nothing when the stream closes before a command came (125)', async () => {
    expect(await waiter([], { end: true })).toEqual({ code: 125, out: 'R', err: '' });
    expect(await waiter([stdinFrame(Buffer.alloc(0))], { end: true })).toEqual({ code: 125, out: 'R', err: '' });
  });

  it('quotes a word for sh, quotes inside included', () => {
    expect(shellWord("a'b")).toBe(`'a'\\''b'`);
    expect(shellWord('')).toBe(`''`);
  });
});

describe("a command's status in-band (the waiting shell's last line)", () => {
  const feed = (line: StatusLine, chunks: string[]) => chunks.map((chunk) => line.push(Buffer.from(chunk)).toString()).join('');

  it('passes the output on and reads the status, the line split anywhere across chunks', () => {
    const whole = `out put\n${MARK}42\n`;
    for (let cut = 0; cut <= whole.length; cut += 1) {
      const line = new StatusLine(MARK);
      expect(feed(line, [whole.slice(0, cut), whole.slice(cut)])).toBe('out put\n');
      expect(line.code).toBe(42);
    }
  });

  it('holds back only what may be the start of the mark, and gives it back when the stream ends without the line', () => {
    const line = new StatusLine(MARK);
    expect(feed(line, ['abc', `x${MARK.slice(0, 5)}`])).toBe('abcx');
    expect(line.flush().toString()).toBe(MARK.slice(0, 5));
    expect(line.code).toBeUndefined();
  });

  it('drops what comes after the line, and marks a line that is no status as none (the stream decides then)', () => {
    const after = new StatusLine(MARK);
    expect(feed(after, [`a${MARK}0\nlate`, 'later'])).toBe('a');
    expect(after.code).toBe(0);
    for (const bad of ['256\n', '-1\n', 'x\n', '1234']) {
      const line = new StatusLine(MARK);
      feed(line, [`${MARK}${bad}`]);
      expect(line.code).toBeNull();
    }
    // Another command's mark is output like any other.
    const other = new StatusLine(MARK);
    expect(feed(other, [`${statusMark()}1\n`]).length).toBeGreaterThan(0);
    expect(other.code).toBeUndefined();
  });
});
