// Does what `diff_task` leaves behind slow the next 1 MiB read_file, and is it the server's forks
// (issue 15, sixth pass in docs/benchmarks.md)? One `moat mcp` server, its SDK client in this
// process (which forks nothing between reads), a read after each of: a read, diff_task,
// run_command `true` (its sync done: a diff_task, then a pause), list_tasks. Per read: the time as
// the client saw it, and the server process's minor page faults over the call, read from
// /proc/<pid>/stat (so nothing is loaded into the server). BENCH_TRACE_READS of each (default 8),
// BENCH_MCP_PAUSE ms between the step and the read (default 300: what the step left running has
// ended; what a fork left, copy-on-write pages, has not). Uses Docker: run it inside the test lock.
// Not a test: nothing asserts a time.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { benchHome } from './repo.js';

const reads = Number(process.env.BENCH_TRACE_READS ?? 8);
const pause = Number(process.env.BENCH_MCP_PAUSE ?? 300);
const bin = process.env.BENCH_MCP_MOAT ?? join(import.meta.dirname, '..', 'bin', 'moat.js');
const { repo, env } = await benchHome('moat-bench-mcpforks-', () => ({ MOAT_SERVER: 'off' }));

const client = new Client({ name: 'moat-bench', version: '1' });
const transport = new StdioClientTransport({ command: process.execPath, args: [bin, 'mcp'], cwd: repo, env, stderr: 'inherit' });
await client.connect(transport);
// `moat mcp` starts the server as its child (src/mcp/load.ts); its faults are the ones counted.
const front = transport.pid;
const server = Number(readFileSync(`/proc/${front}/task/${front}/children`, 'utf8').trim().split(/\s+/)[0]);
const stat = (pid) =>
  readFileSync(`/proc/${pid}/stat`, 'utf8')
    .slice(readFileSync(`/proc/${pid}/stat`, 'utf8').lastIndexOf(')') + 2)
    .split(' ');
const faults = () => Number(stat(server)[7]);
const children = () => readFileSync(`/proc/${server}/task/${server}/children`, 'utf8').trim();
const call = async (name, args) => {
  const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 600_000 });
  if (result.isError) throw new Error(`${name}: ${result.content.map((c) => c.text).join(' ')}`);
  return result;
};
const task = (await call('create_task', { title: 'forks' })).structuredContent.task;
await call('run_command', { task, command: 'head -c 786432 /dev/urandom | base64 -w 76 | head -c 1048576 > big.txt' });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const read = async () => {
  const before = faults();
  const start = performance.now();
  const result = await call('read_file', { task, path: 'big.txt' });
  const ms = performance.now() - start;
  if (result.content[0].text.length !== 1048576) throw new Error('short read');
  return { ms, faults: faults() - before };
};
const steps = {
  'a read': () => read(),
  diff_task: () => call('diff_task', { task, patch: false }),
  'run_command `true` (then diff_task for its sync, then 1 s)': async () => {
    await call('run_command', { task, command: 'true' });
    await call('diff_task', { task, patch: false });
    await sleep(1000);
  },
  'run_command `true` alone (its sync waited for by a 2 s pause)': async () => {
    await call('run_command', { task, command: 'true' });
    await sleep(2000);
  },
  list_tasks: () => call('list_tasks', {}),
};
for (let i = 0; i < 8; i += 1) await read();
const got = Object.fromEntries(Object.keys(steps).map((name) => [name, []]));
const stepFaults = Object.fromEntries(Object.keys(steps).map((name) => [name, []]));
for (let i = 0; i < reads; i += 1)
  for (const [name, step] of Object.entries(steps)) {
    await read(); // the same start for every step: right after a read
    const f = faults();
    await step();
    stepFaults[name].push(faults() - f);
    await sleep(pause);
    got[name].push(await read());
  }
if (children()) console.log(`the server's children at the end: ${children()}`);
await client.close();
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`${reads} 1 MiB reads after each step, ${pause} ms pause between the step and the read; medians (p10-p90)`);
console.log("| before the read | read ms | server's faults during the read | server's faults during the step |\n|---|---|---|---|");
const spread = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return `${median(s).toFixed(0)} (${s[Math.floor(s.length * 0.1)].toFixed(0)}-${s[Math.floor(s.length * 0.9)].toFixed(0)})`;
};
for (const [name, rows] of Object.entries(got))
  console.log(`| ${name} | ${spread(rows.map((r) => r.ms))} | ${spread(rows.map((r) => r.faults))} | ${spread(stepFaults[name])} |`);
