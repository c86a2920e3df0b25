import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { envCommand } from '../../src/engine/env-command.js';

/** Runs the words as an engine's exec would (here on the host: the same env(1) as the base image's). */
const run = (words: string[]) => {
  const [file, ...args] = words;
  return execFileSync(file!, args, { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
};

describe('a command with a working directory and environment through env(1) (env-command.ts)', () => {
  it('gives the command its variables and directory, quotes and all', () => {
    expect(run(envCommand(['sh', '-c', 'echo "$A|$B|$PWD"'], '/tmp', { A: "it's", B: 'x=y -- z' }))).toBe("it's|x=y -- z|/tmp\n");
    expect(run(envCommand(['sh', '-c', 'echo "$PWD"'], undefined, undefined))).toBe(`${process.cwd()}\n`);
  });

  it('runs a command whose name holds "=" or starts with "-" as that command, not as a pair or an option', () => {
    const dir = mkdtempSync(join(tmpdir(), 'moat-env-'));
    try {
      for (const name of ['a=b', '-i']) {
        const file = join(dir, name);
        writeFileSync(file, `#!/bin/sh\necho "ran ${name} $1 $X"\n`);
        chmodSync(file, 0o755);
      }
      expect(run(envCommand([join(dir, 'a=b'), 'one'], dir, { X: '1' }))).toBe('ran a=b one 1\n');
      expect(run(envCommand(['-i', 'two'], dir, { X: '2', PATH: dir }))).toBe('ran -i two 2\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
