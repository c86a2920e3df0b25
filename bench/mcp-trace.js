// Where a 1 MiB read_file's time goes, by what came before it (issue 15, fifth pass in
// docs/benchmarks.md): one `moat mcp` server traced from inside (bench/mcp-trace-preload.js) and
// its SDK client in this process, a read after each of: nothing, diff_task, run_command, list_tasks,
// a read on another server, a fork in this (the client's) process. Per read: the total, the request
// to the server's write, the first to the last byte at the client, the page faults on both sides,
// the GCs in the server. BENCH_TRACE_READS of each (default 6), BENCH_MCP_PAUSE ms before each (300).
// Uses Docker: run it inside the test lock. Not a test: nothing asserts a time.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { benchHome } from './repo.js';

const reads = Number(process.env.BENCH_TRACE_READS ?? 6);
const pause = Number(process.env.BENCH_MCP_PAUSE ?? 300);
const bin = join(import.meta.dirname, '..', 'bin', 'moat.js');
const preload = join(import.meta.dirname, 'mcp-trace-preload.js');
const { repo, env } = await benchHome('moat-bench-mcptrace-', () => ({ MOAT_SERVER: 'off' }));
const now = () => performance.timeOrigin + performance.now();

const connect = async (extra) => {
  const client = new Client({ name: 'moat-bench', version: '1' });
  const transport = new StdioClientTransport({ command: process.execPath, args: [bin, 'mcp'], cwd: repo, env: { ...env, ...extra }, stderr: 'pipe' });
  await client.connect(transport);
  const traced = { client, chunks: [], trace: [] };
  // The SDK keeps the server's process to itself; its stdout is only listened to here, not read.
  transport._process.stdout.on('data', () => traced.chunks.push(now()));
  let partial = '';
  transport.stderr.on('data', (chunk) => {
    const lines = (partial + String(chunk)).split('\n');
    partial = lines.pop();
    for (const line of lines) if (line.startsWith('TRACE ')) traced.trace.push(line.slice(6).split(' '));
  });
  return traced;
};
const server = await connect({ NODE_OPTIONS: `--import=${preload}` });
const other = await connect({ MOAT_MCP_HOST_READ: 'off' });
const call = async (on, name, args) => {
  const result = await on.client.callTool({ name, arguments: args }, undefined, { timeout: 600_000 });
  if (result.isError) throw new Error(`${name}: ${result.content.map((c) => c.text).join(' ')}`);
  return result;
};
const task = (await call(server, 'create_task', { title: 'trace' })).structuredContent.task;
await call(server, 'run_command', { task, command: 'head -c 786432 /dev/urandom | base64 -w 76 | head -c 1048576 > big.txt' });

const traceRead = async () => {
  server.chunks.length = 0;
  server.trace.length = 0;
  const clientFaults = process.resourceUsage().minorPageFault;
  const start = now();
  const result = await call(server, 'read_file', { task, path: 'big.txt' });
  const end = now();
  if (result.content[0].text.length !== 1048576) throw new Error('short read');
  await new Promise((resolve) => setTimeout(resolve, 20)); // the server's last trace lines
  const at = (kind) => server.trace.findLast(([k]) => k === kind);
  const [inLine, write, written] = [at('in'), at('write'), at('written')];
  return {
    total: end - start,
    server: write ? Number(write[1]) - start : NaN,
    transfer: server.chunks.length > 0 ? server.chunks.at(-1) - server.chunks[0] : NaN,
    serverFaults: inLine && written ? Number(written[2]) - Number(inLine[2]) : NaN,
    clientFaults: process.resourceUsage().minorPageFault - clientFaults,
    gcs: server.trace.filter(([k]) => k === 'gc').length,
  };
};
const before = {
  nothing: () => undefined,
  diff_task: () => call(server, 'diff_task', { task, patch: false }),
  'run_command true, diff_task': async () => {
    await call(server, 'run_command', { task, command: 'true' });
    await call(server, 'diff_task', { task, patch: false });
  },
  list_tasks: () => call(server, 'list_tasks', {}),
  'a read on another server': () => call(other, 'read_file', { task, path: 'big.txt' }),
  'a fork in the client (spawnSync true)': () => execFileSync('true'),
};
for (let i = 0; i < 5; i += 1) await traceRead();
const got = Object.fromEntries(Object.keys(before).map((name) => [name, []]));
for (let i = 0; i < reads; i += 1)
  for (const [name, step] of Object.entries(before)) {
    await step();
    await new Promise((resolve) => setTimeout(resolve, pause));
    got[name].push(await traceRead());
  }
await server.client.close();
await other.client.close();
const median = (xs) => {
  const known = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return known.length > 0 ? known[known.length >> 1].toFixed(0) : '-';
};
console.log(`${reads} 1 MiB reads after each step, ${pause} ms pause before each; medians`);
console.log(
  "| before the read | total ms | request to the server's write ms | first to last byte at the client ms | server faults | client faults | server GCs |\n|---|---|---|---|---|---|---|",
);
for (const [name, rows] of Object.entries(got))
  console.log(
    `| ${name} | ${median(rows.map((r) => r.total))} | ${median(rows.map((r) => r.server))} | ${median(rows.map((r) => r.transfer))} | ${median(rows.map((r) => r.serverFaults))} | ${median(rows.map((r) => r.clientFaults))} | ${rows.reduce((n, r) => n + r.gcs, 0)} |`,
  );
