import { createInterface } from 'node:readline/promises';
import type { Output } from './output.js';

/**
 * Asks a yes/no question on the terminal; without a terminal the answer is no. The question is
 * written as every other line moat prints (Output.question): escaped, secrets redacted.
 */
export async function confirm(out: Output, line: string): Promise<boolean> {
  const question = out.question(line);
  if (!process.stdin.isTTY || !process.stderr.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
