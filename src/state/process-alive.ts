import { readFileSync } from 'node:fs';

/**
 * Whether a process moat recorded (in a pid or lock file) still runs. EPERM means it runs as
 * another user: alive, and not ours to take over. A zombie is not alive: it has closed its files,
 * sockets and locks already, and an orphan stays one until pid 1 reaps it (seconds, on some
 * hosts), while signal 0 still finds it.
 */
export function processAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !exited(pid);
}

/** Whether /proc says the process has exited: a zombie (state Z or X), or gone since signal 0 found it. */
function exited(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    // Without /proc (not Linux) signal 0's answer stands.
    return (error as NodeJS.ErrnoException).code === 'ENOENT' && readable('/proc/self/stat');
  }
  // The state follows the command, which may hold spaces and parentheses: read after the last ')'.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'Z' || state === 'X';
}

function readable(path: string): boolean {
  try {
    readFileSync(path);
    return true;
  } catch {
    return false;
  }
}
