// The CLI's warm server in a benchmark: its socket lives under the run's own directory, and it
// is stopped (removing the tasks it made ahead) before the run's files go.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export function serverEnv(root) {
  mkdirSync(join(root, 'run'), { mode: 0o700, recursive: true });
  return { XDG_RUNTIME_DIR: join(root, 'run') };
}

export function serverPids(root) {
  const dir = join(root, 'run', `moat-${process.getuid()}`);
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.sock.pid'))
        .map((f) => Number(readFileSync(join(dir, f), 'utf8')))
    : [];
}

export function stopServers(root) {
  for (const pid of serverPids(root)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      continue;
    }
    while (existsSync(`/proc/${pid}`)) spawnSync('sleep', ['0.1']);
  }
}

/**
 * Lets the machine go quiet between measurements: what either side does after it returns
 * (docker's own cleanup, the warm server making the next task ahead) never overlaps the next one.
 */
export function settle() {
  spawnSync('sleep', [process.env.BENCH_SETTLE ?? '0.5']);
}
