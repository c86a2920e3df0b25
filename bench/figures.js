// The figures the exec-style benchmarks print: per scenario the median and 10th/90th percentiles of
// its samples, a table with each median against the baseline row (the second: docker exec), and
// the machine they ran on.
import { execFileSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
export const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

export function machine() {
  const docker = execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8' }).trim();
  return `${cpus().length} cores (${cpus()[0]?.model ?? 'cpu'}), ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, node ${process.version}, docker ${docker}`;
}

/** Prints the table; returns its rows and the baseline's median. */
export function printRows(samples, rounds, where) {
  const rows = Object.entries(samples).map(([name, xs]) => ({ name, median: median(xs), p10: pct(xs, 10), p90: pct(xs, 90) }));
  const docker = rows[1].median;
  console.log(`machine: ${where}; ${rounds} rounds, alternating`);
  console.log('| scenario | median ms | p10 ms | p90 ms | x docker exec |\n|---|---|---|---|---|');
  for (const row of rows)
    console.log(`| ${row.name} | ${row.median.toFixed(0)} | ${row.p10.toFixed(0)} | ${row.p90.toFixed(0)} | ${(row.median / docker).toFixed(2)} |`);
  return { rows, docker };
}
