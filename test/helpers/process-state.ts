import { readFileSync } from 'node:fs';

/**
 * Whether a process runs: /proc has it and it is not a zombie. `existsSync('/proc/<pid>')` also
 * counts a process that has exited but is not reaped yet, which for an orphan (a warm server, a
 * forwarder, the gateway: their parent is gone) lasts until pid 1 reaps it, seconds on some hosts.
 */
export function processRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}
