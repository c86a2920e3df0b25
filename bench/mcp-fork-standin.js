// Does a fork in the MCP server slow its next 1 MiB read_file, and does starting its programs
// from a helper process (src/workspace/spawner.ts) take that away (issue 15, sixth pass)? Without the
// engine: the SDK's own client over a real stdio pipe to a stand-in server (bench/mcp-standin-
// server.js: moat's own answer path reading a host file), a read after a read and a read after
// a call that runs `git --version` 8 times through runProcess, as a diff_task's git does; the
// server's minor page faults over each read from /proc/<pid>/stat. Two variants interleaved:
// the programs forked by the server (as before) and by its helper (MOAT_STANDIN_SPAWNER=on, as
// `moat mcp` now runs). No container: runs without the test lock. Not a test: nothing asserts a time.
//   BENCH_RUNS (3) runs of BENCH_ROUNDS (10) pairs per variant
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { serverEnvironment } from '../dist/mcp/server-memory.js';
import { bigTextFile } from './big-text.js';

const runs = Number(process.env.BENCH_RUNS ?? 3);
const rounds = Number(process.env.BENCH_ROUNDS ?? 10);
const dist = join(import.meta.dirname, '..', 'dist');
const { dir, file } = bigTextFile('moat-bench-fork-standin-');
const faultsOf = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
};

async function run(spawner) {
  const client = new Client({ name: 'moat-bench', version: '1' });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [join(import.meta.dirname, 'mcp-standin-server.js')],
    env: { ...serverEnvironment(process.env), MOAT_DIST: dist, MOAT_STANDIN_SPAWNER: spawner ? 'on' : 'off' },
    stderr: 'ignore',
  });
  await client.connect(transport);
  const read = async () => {
    const before = faultsOf(transport.pid);
    const start = performance.now();
    const result = await client.callTool({ name: 'read_file', arguments: { path: file } });
    const ms = performance.now() - start;
    if (result.content[0].text.length !== 1048576) throw new Error('short read');
    return { ms, faults: faultsOf(transport.pid) - before };
  };
  const git = () => client.callTool({ name: 'git', arguments: {} });
  for (let i = 0; i < 5; i += 1) {
    await read();
    await git();
  }
  const got = { afterRead: [], afterGit: [] };
  for (let i = 0; i < rounds; i += 1) {
    await read();
    got.afterRead.push(await read());
    await git();
    got.afterGit.push(await read());
  }
  await client.close();
  return got;
}

const variants = { 'forked by the server (before)': false, 'forked by its helper (src/workspace/spawner.ts)': true };
const all = Object.fromEntries(Object.keys(variants).map((name) => [name, { afterRead: [], afterGit: [] }]));
for (let i = 0; i < runs; i += 1)
  for (const [name, spawner] of Object.entries(variants)) {
    const got = await run(spawner);
    all[name].afterRead.push(...got.afterRead);
    all[name].afterGit.push(...got.afterGit);
  }
rmSync(dir, { recursive: true, force: true });
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
const p10 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.1)] ?? NaN;
console.log("| programs | read after a read: ms (p10) | server's faults | read after 8 git runs: ms (p10) | server's faults |\n|---|---|---|---|---|");
for (const [name, got] of Object.entries(all)) {
  const cell = (rows) => `${median(rows.map((r) => r.ms)).toFixed(0)} (${p10(rows.map((r) => r.ms)).toFixed(0)}) | ${median(rows.map((r) => r.faults))}`;
  console.log(`| ${name} | ${cell(got.afterRead)} | ${cell(got.afterGit)} |`);
}
