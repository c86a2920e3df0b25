import { describe, expect, it } from 'vitest';
import { cancelOnSignal } from '../../src/cli/cancel.js';
import type { CliContext } from '../../src/cli/main.js';

/** A CLI whose Ctrl-C the test sends, recording what moat did with each. */
function fakeCli() {
  const listeners: ((signal: 'INT' | 'TERM') => void)[] = [];
  const seen = { aborted: [] as number[], notes: [] as string[] };
  const cli = {
    io: {
      onSignal: (listener: (signal: 'INT' | 'TERM') => void) => (listeners.push(listener), () => undefined),
      abort: (code: number) => seen.aborted.push(code),
    },
    output: () => ({ note: (text: string) => seen.notes.push(text) }),
  } as unknown as CliContext;
  return { cli, seen, interrupt: (signal: 'INT' | 'TERM' = 'INT') => listeners.forEach((listener) => listener(signal)) };
}

describe('Ctrl-C of moat run (cancelOnSignal)', () => {
  it('before the command: the first cancels, the second leaves', () => {
    const { cli, seen, interrupt } = fakeCli();
    const cancel = cancelOnSignal(cli);
    interrupt();
    expect(cancel.signal.aborted).toBe(true);
    expect(seen.aborted).toEqual([]);
    interrupt('TERM');
    expect(seen.aborted).toEqual([143]);
  });

  it('the Ctrl-C that went to the command does not count; after it, a first one is held with a note, a second leaves', () => {
    const { cli, seen, interrupt } = fakeCli();
    const cancel = cancelOnSignal(cli);
    cancel.commandStarted();
    interrupt();
    cancel.commandEnded();
    expect(cancel.signal.aborted).toBe(false);
    expect(seen.aborted).toEqual([]);
    interrupt();
    expect(seen.aborted).toEqual([]);
    expect(seen.notes).toEqual(["bringing the task's work home first (a second Ctrl-C leaves now; moat sync brings it home later)"]);
    expect(cancel.signal.aborted).toBe(false);
    interrupt();
    expect(seen.aborted).toEqual([130]);
  });
});
