import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { commandFrame, shellWord, WAIT_SCRIPT } from '../../src/engine/kubernetes-exec-ahead.js';
import { stdinFrame } from '../../src/engine/kubernetes-exec.js';

/** Runs the waiting shell as the sandbox would (frames without their channel byte), with stdin left open unless told. */
async function waiter(frames: Buffer[], options: { end?: boolean } = {}): Promise<{ code: number | null; out: string }> {
  const child = spawn('/bin/sh', ['-c', WAIT_SCRIPT, 'moat-wait'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  for (const frame of frames) child.stdin.write(frame.subarray(1));
  if (options.end) child.stdin.end();
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  child.stdin.destroy();
  return { code, out };
}

describe('an exec opened ahead (a shell waiting for one command)', () => {
  it('says it runs, then runs exactly the words it is sent, with the stdin frames after them, and ends with its status', async () => {
    const words = ['sh', '-c', 'printf "%s|" "$@"; cat; exit 7', 'zero', 'it\'s "x" $HOME `id` $(id)\nnext', 'a b', ''];
    const { code, out } = await waiter([commandFrame(words), stdinFrame('in\n'), stdinFrame(Buffer.alloc(0))]);
    expect(code).toBe(7);
    // No expansion of any kind: each word arrives as sent.
    expect(out).toBe(`R${words.slice(4).join('|')}|in\n`);
  });

  it('ends with the command although its stdin stays open, the command in a process group of its own', async () => {
    const { code, out } = await waiter([commandFrame(['sh', '-c', 'echo "$$ $(ps -o pgid= -p $$)"; exit 3'])]);
    expect(code).toBe(3);
    const [pid, pgid] = out.slice(1).trim().split(/\s+/);
    expect(pgid).toBe(pid);
  });

  it('runs nothing when the stream closes before a command came (125)', async () => {
    expect(await waiter([], { end: true })).toEqual({ code: 125, out: 'R' });
    expect(await waiter([stdinFrame(Buffer.alloc(0))], { end: true })).toEqual({ code: 125, out: 'R' });
  });

  it('quotes a word for sh, quotes inside included', () => {
    expect(shellWord("a'b")).toBe(`'a'\\''b'`);
    expect(shellWord('')).toBe(`''`);
  });
});
