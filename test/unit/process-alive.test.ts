import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { processAlive } from '../../src/state/process-alive.js';

const state = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
};

/**
 * Liveness as gc, the config lock and the egress bridge read it: a process that has exited is not
 * alive even while it is a zombie (its sockets and locks are gone; an orphan can stay one for
 * seconds until pid 1 reaps it), which signal 0 alone would call alive.
 */
describe('processAlive', () => {
  it('a running process is alive; a zombie and a reaped process are not', async () => {
    // A child of a shell that does not wait for it: once it exits it is a zombie until the shell ends.
    const shell = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = Number(await new Promise<string>((resolve) => shell.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString()))));
      expect(processAlive(pid)).toBe(true);
      process.kill(pid, 'SIGKILL');
      for (let tries = 0; state(pid) !== 'Z' && tries < 200; tries += 1) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(state(pid)).toBe('Z');
      expect(processAlive(pid)).toBe(false);
    } finally {
      shell.kill('SIGKILL');
    }
    expect(processAlive(spawnSync('true').pid)).toBe(false);
    expect(processAlive(process.pid)).toBe(true);
    expect(processAlive(undefined)).toBe(false);
  });
});
