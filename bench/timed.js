// One timing of a command for the benchmarks: wall-clock milliseconds from spawn to exit; a
// failed command fails the benchmark rather than being timed.
import { spawnSync } from 'node:child_process';

export function timed(cmd, args, options = {}) {
  const start = process.hrtime.bigint();
  const result = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', ...options });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${result.stderr}`);
  return ms;
}
