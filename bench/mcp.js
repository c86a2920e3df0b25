// A tool call of `moat mcp` against `docker exec` on the same container (issue 15): run_command
// `true` (the round trip from the client: JSON-RPC over stdio, the exec, the sync of the task's
// work) vs `docker exec <container> true`, alternating in one run; and read_file of 1 MiB and of
// 1 KiB read by the host (where the workspace is a host folder: src/mcp/host-read.ts), through the
// task's resident file server (MOAT_MCP_HOST_READ=off: the way before it) and through one exec per
// call (MOAT_MCP_FILE_SERVER=off too), each on a `moat mcp` server of its own over the same task. The client is the MCP
// SDK's own, over a real stdio pipe to `node bin/moat.js mcp`.
// Prints medians, spread and ratios, and writes bench/results/mcp.json. Not a test: nothing asserts a time.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { timed } from './timed.js';
import { machine, printRows } from './figures.js';
import { benchHome } from './repo.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 20);
const bin = join(import.meta.dirname, '..', 'bin', 'moat.js');
const { repo, env } = await benchHome('moat-bench-mcp-', () => ({ MOAT_SERVER: 'off' }));

const connect = async (extra = {}, moat = bin) => {
  const client = new Client({ name: 'moat-bench', version: '1' });
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [moat, 'mcp'], cwd: repo, env: { ...env, ...extra }, stderr: 'inherit' }));
  return client;
};
// BENCH_MCP_BEFORE=/path/to/other/bin/moat.js: another build's `moat mcp` over the same task (the
// change's before, e.g. main's checkout, built), read in the same rounds.
const before = process.env.BENCH_MCP_BEFORE ? await connect({}, process.env.BENCH_MCP_BEFORE) : undefined;
const client = await connect();
const served = await connect({ MOAT_MCP_HOST_READ: 'off' });
const perExec = await connect({ MOAT_MCP_FILE_SERVER: 'off', MOAT_MCP_HOST_READ: 'off' });
const callOn = async (on, name, args) => {
  const result = await on.callTool({ name, arguments: args }, undefined, { timeout: 600_000 });
  if (result.isError) throw new Error(`${name}: ${result.content.map((c) => c.text).join(' ')}`);
  // read_file: the content is the first text item, its data in _meta.
  return result.structuredContent ?? { ...result._meta['moat/result'], content: result.content[0].text };
};
const call = (name, args) => callOn(client, name, args);
const task = (await call('create_task', { title: 'bench' })).task;
const list = JSON.parse(execFileSync(process.execPath, [bin, 'ls', '--json'], { cwd: repo, env, encoding: 'utf8' }));
const record = list.find((t) => t.name === task);
const container = record.containerId;
const user = execFileSync('docker', ['inspect', '-f', '{{.Config.User}}', container], { encoding: 'utf8' }).trim();
await call('run_command', { task, command: 'head -c 786432 /dev/urandom | base64 -w 76 | head -c 1048576 > big.txt && head -c 1024 big.txt > small.txt' });

const clock = async (run) => {
  const start = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - start) / 1e6;
};
const readOn = async (on, path, bytes) => {
  const read = await callOn(on, 'read_file', { task, path });
  if (read.size !== bytes || read.content.length !== bytes) throw new Error(`read ${read.size} bytes`);
};
// A client that reads a big file a page at a time (read_file's offset): smaller messages, more calls.
const readPages = async (on, path, bytes, page) => {
  let offset = 0;
  let read = 0;
  while (offset !== undefined) {
    const part = await callOn(on, 'read_file', { task, path, offset, maxBytes: page });
    read += part.content.length;
    offset = part.nextOffset;
  }
  if (read !== bytes) throw new Error(`read ${read} bytes in pages`);
};
// BENCH_MCP_PAUSE=ms: a pause before each timed call of the rounds and of the fresh servers, so
// that what the steps before left running (the engine after an exec, another process's garbage
// collection, a server's own start) has ended: with it, a figure is the call alone.
const pause = Number(process.env.BENCH_MCP_PAUSE ?? 0);
const idle = () => (pause > 0 ? new Promise((resolve) => setTimeout(resolve, pause)) : undefined);
const scenarios = {
  'MCP run_command `true` (round trip from the client; the sync follows the result)': () => clock(() => call('run_command', { task, command: 'true' })),
  'docker exec (same container, same user and workdir)': async () => timed('docker', ['exec', '-u', user, '-w', '/workspace', container, 'true']),
  'MCP read_file, 1 MiB (read by the host, the default)': () => clock(() => readOn(client, 'big.txt', 1048576)),
  'MCP read_file, 1 MiB, resident file server (before; MOAT_MCP_HOST_READ=off)': () => clock(() => readOn(served, 'big.txt', 1048576)),
  'MCP read_file, 1 MiB, one exec per call (MOAT_MCP_FILE_SERVER=off too)': () => clock(() => readOn(perExec, 'big.txt', 1048576)),
  'MCP read_file, 1 KiB (read by the host)': () => clock(() => readOn(client, 'small.txt', 1024)),
  'MCP read_file, 1 KiB, resident file server (before)': () => clock(() => readOn(served, 'small.txt', 1024)),
  'MCP read_file, 1 KiB, one exec per call': () => clock(() => readOn(perExec, 'small.txt', 1024)),
  'MCP read_file, 1 MiB in four pages of 256 KiB (offset, read by the host)': () => clock(() => readPages(client, 'big.txt', 1048576, 262144)),
  'MCP list_tasks (a call that runs nothing in the sandbox)': () => clock(() => call('list_tasks', {})),
  ...(before
    ? {
        'MCP read_file, 1 MiB, BENCH_MCP_BEFORE (another build)': () => clock(() => readOn(before, 'big.txt', 1048576)),
        'MCP read_file, 1 KiB, BENCH_MCP_BEFORE (another build)': () => clock(() => readOn(before, 'small.txt', 1024)),
      }
    : {}),
};
// The reads go first in a round, after the previous run_command's sync has ended (diff_task waits
// for it, untimed): the sync that follows a command's result runs git in the sandbox and on the
// host, and would otherwise land on whichever scenario came next. Printed in the order above.
const order = Object.keys(scenarios).sort((a, b) => Number(!a.includes('read_file')) - Number(!b.includes('read_file')));
const settle = () => call('diff_task', { task, patch: false });
// A fresh server's first large reads are two to three times slower than its later ones (measured:
// about ten 1 MiB reads before they settle; V8 compiling the hot paths and sizing its heap), and an
// MCP server serves a whole session. So the first 1 MiB reads of a server just started are timed
// apart (their own row), and the rounds come after BENCH_MCP_WARMUP unmeasured ones.
const fresh = [];
for (let i = 0; i < Number(process.env.BENCH_MCP_FRESH ?? 3); i += 1) {
  const cold = await connect();
  await idle();
  fresh.push(await clock(() => readOn(cold, 'big.txt', 1048576)));
  await cold.close();
}
const warmup = Number(process.env.BENCH_MCP_WARMUP ?? 10);
for (let i = 0; i < Math.max(1, warmup); i += 1) for (const name of order) await scenarios[name]();
const samples = Object.fromEntries(Object.keys(scenarios).map((k) => [k, []]));
for (let i = 0; i < rounds; i += 1) {
  await settle();
  for (const name of order) {
    await idle();
    samples[name].push(await scenarios[name]());
  }
}
// The rounds above read from four servers in turn. A client has one: its reads, one after
// another on one server, are timed apart too (BENCH_MCP_ALONE of them).
const alone = [];
for (let i = 0; i < Number(process.env.BENCH_MCP_ALONE ?? 20); i += 1) {
  await idle();
  alone.push(await clock(() => readOn(client, 'big.txt', 1048576)));
}
await client.close();
await served.close();
await before?.close();
await perExec.close();

const where = machine();
const { rows, docker } = printRows(samples, rounds, where);
fresh.sort((a, b) => a - b);
alone.sort((a, b) => a - b);
if (alone.length > 0)
  console.log(
    `${alone.length} 1 MiB read_file one after another on one server (as a client reads): median ${alone[alone.length >> 1].toFixed(0)} ms, p10 ${alone[Math.floor(alone.length * 0.1)].toFixed(0)}, p90 ${alone[Math.floor(alone.length * 0.9)].toFixed(0)}`,
  );
if (fresh.length > 0)
  console.log(
    `the first 1 MiB read_file of a server just started (${fresh.length} servers): median ${fresh[fresh.length >> 1].toFixed(0)} ms, each ${fresh.map((ms) => ms.toFixed(0)).join(', ')}; the rows above come after ${warmup} unmeasured rounds`,
  );
console.log(
  `ratio MCP run_command / docker exec (median): ${(rows[0].median / docker).toFixed(2)} (goal <= 1.2); read_file 1 MiB median ${rows[2].median.toFixed(0)} ms (goal <= 50), ${(rows[3].median / rows[2].median).toFixed(1)}x faster than through the file server, ${(rows[4].median / rows[2].median).toFixed(1)}x faster than one exec per call; 1 KiB ${(rows[6].median / rows[5].median).toFixed(1)}x faster than the file server`,
);
if (before) {
  const [big, small] = rows.slice(-2);
  console.log(
    `before (BENCH_MCP_BEFORE) / now, median: read_file 1 MiB ${big.median.toFixed(0)} / ${rows[2].median.toFixed(0)} ms = ${(big.median / rows[2].median).toFixed(1)}x; 1 KiB ${small.median.toFixed(0)} / ${rows[5].median.toFixed(0)} ms = ${(small.median / rows[5].median).toFixed(1)}x`,
  );
}
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(
  join(import.meta.dirname, 'results', 'mcp.json'),
  JSON.stringify({ date: new Date().toISOString(), machine: where, rounds, warmup, fresh, alone, rows, ratio: rows[0].median / docker }, null, 2),
);
