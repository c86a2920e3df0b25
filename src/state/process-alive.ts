/**
 * Whether a process moat recorded (in a pid or lock file) still runs. EPERM means it runs as
 * another user: alive, and not ours to take over.
 */
export function processAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
