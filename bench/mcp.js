// A tool call of `moat mcp` against `docker exec` on the same container (issue 15): run_command
// `true` (the round trip from the client: JSON-RPC over stdio, the exec, the sync of the task's
// work) vs `docker exec <container> true`, alternating in one run; and read_file of 1 MiB and of
// 1 KiB read by the host (where the workspace is a host folder: src/mcp/host-read.ts), through the
// task's resident file server (MOAT_MCP_HOST_READ=off: the way before it) and through one exec per
// call (MOAT_MCP_FILE_SERVER=off too), each on a `moat mcp` server of its own over the same task. The client is the MCP
// SDK's own, over a real stdio pipe to `node bin/moat.js mcp`, each in a process of its own
// (bench/mcp-client.js says why: this process forks `docker exec`, and a process that forks pays
// for it at its next big read; BENCH_MCP_CLIENTS=shared puts them back in this process, to see it).
// Prints medians, spread and ratios, and writes bench/results/mcp.json. Not a test: nothing asserts a time.
import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mcpClient } from './mcp-client.js';
import { timed } from './timed.js';
import { machine, printRows } from './figures.js';
import { benchHome } from './repo.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 20);
const bin = join(import.meta.dirname, '..', 'bin', 'moat.js');
const { repo, env } = await benchHome('moat-bench-mcp-', () => ({ MOAT_SERVER: 'off' }));

const shared = process.env.BENCH_MCP_CLIENTS === 'shared';
/** A client of `node <moat> mcp`: call(name, args) gives { ms (as the client saw it), value }. */
const connect = async (extra = {}, moat = bin) => {
  if (shared) return mcpClient(moat, repo, { ...env, ...extra });
  const child = fork(join(import.meta.dirname, 'mcp-client.js'), ['child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map();
  let next = 0;
  child.on('message', ({ id, value, error }) => {
    const { resolve, reject } = waiting.get(id);
    waiting.delete(id);
    if (error) reject(new Error(error));
    else resolve(value);
  });
  child.on('exit', (code) => {
    for (const { reject } of waiting.values()) reject(new Error(`the client process left (${code})`));
  });
  const ask = (message) =>
    new Promise((resolve, reject) => {
      const id = next++;
      waiting.set(id, { resolve, reject });
      child.send({ id, ...message });
    });
  await ask({ op: 'connect', moat, cwd: repo, env: { ...env, ...extra } });
  const close = async () => {
    await ask({ op: 'close' });
    child.disconnect();
  };
  return { call: (name, args) => ask({ op: 'call', name, args }), close };
};
// BENCH_MCP_BEFORE=/path/to/other/bin/moat.js: another build's `moat mcp` over the same task (the
// change's before, e.g. main's checkout, built), read in the same rounds.
const before = process.env.BENCH_MCP_BEFORE ? await connect({}, process.env.BENCH_MCP_BEFORE) : undefined;
const client = await connect();
const served = await connect({ MOAT_MCP_HOST_READ: 'off' });
const perExec = await connect({ MOAT_MCP_FILE_SERVER: 'off', MOAT_MCP_HOST_READ: 'off' });
const callOn = async (on, name, args) => (await on.call(name, args)).value;
const call = (name, args) => callOn(client, name, args);
/** A timed call: its time as the client saw it. */
const timedCall = async (on, name, args) => (await on.call(name, args)).ms;
const task = (await call('create_task', { title: 'bench' })).task;
const list = JSON.parse(execFileSync(process.execPath, [bin, 'ls', '--json'], { cwd: repo, env, encoding: 'utf8' }));
const record = list.find((t) => t.name === task);
const container = record.containerId;
const user = execFileSync('docker', ['inspect', '-f', '{{.Config.User}}', container], { encoding: 'utf8' }).trim();
await call('run_command', { task, command: 'head -c 786432 /dev/urandom | base64 -w 76 | head -c 1048576 > big.txt && head -c 1024 big.txt > small.txt' });

// The client process's minor page faults per 1 MiB read of the default server (mcp-client.js says why they matter).
let clientFaults = [];
const readOn = async (on, path, bytes) => {
  const { ms, value, faults } = await on.call('read_file', { task, path });
  if (on === client && bytes === 1048576) clientFaults.push(faults);
  if (value.size !== bytes || value.contentLength !== bytes) throw new Error(`read ${value.size} bytes`);
  return ms;
};
// A client that reads a big file a page at a time (read_file's offset): smaller messages, more calls.
const readPages = async (on, path, bytes, page) => {
  let offset = 0;
  let read = 0;
  let ms = 0;
  while (offset !== undefined) {
    const part = await on.call('read_file', { task, path, offset, maxBytes: page });
    read += part.value.contentLength;
    offset = part.value.nextOffset;
    ms += part.ms;
  }
  if (read !== bytes) throw new Error(`read ${read} bytes in pages`);
  return ms;
};
// BENCH_MCP_PAUSE=ms: a pause before each timed call of the rounds and of the fresh servers, so
// that what the steps before left running (the engine after an exec, another process's garbage
// collection, a server's own start) has ended: with it, a figure is the call alone.
const pause = Number(process.env.BENCH_MCP_PAUSE ?? 0);
const idle = () => (pause > 0 ? new Promise((resolve) => setTimeout(resolve, pause)) : undefined);
const scenarios = {
  'MCP run_command `true` (round trip from the client; the sync follows the result)': () => timedCall(client, 'run_command', { task, command: 'true' }),
  'docker exec (same container, same user and workdir)': async () => timed('docker', ['exec', '-u', user, '-w', '/workspace', container, 'true']),
  'MCP read_file, 1 MiB (read by the host, the default)': () => readOn(client, 'big.txt', 1048576),
  'MCP read_file, 1 MiB, resident file server (before; MOAT_MCP_HOST_READ=off)': () => readOn(served, 'big.txt', 1048576),
  'MCP read_file, 1 MiB, one exec per call (MOAT_MCP_FILE_SERVER=off too)': () => readOn(perExec, 'big.txt', 1048576),
  'MCP read_file, 1 KiB (read by the host)': () => readOn(client, 'small.txt', 1024),
  'MCP read_file, 1 KiB, resident file server (before)': () => readOn(served, 'small.txt', 1024),
  'MCP read_file, 1 KiB, one exec per call': () => readOn(perExec, 'small.txt', 1024),
  'MCP read_file, 1 MiB in four pages of 256 KiB (offset, read by the host)': () => readPages(client, 'big.txt', 1048576, 262144),
  'MCP list_tasks (a call that runs nothing in the sandbox)': () => timedCall(client, 'list_tasks', {}),
  ...(before
    ? {
        'MCP read_file, 1 MiB, BENCH_MCP_BEFORE (another build)': () => readOn(before, 'big.txt', 1048576),
        'MCP read_file, 1 KiB, BENCH_MCP_BEFORE (another build)': () => readOn(before, 'small.txt', 1024),
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
  fresh.push(await readOn(cold, 'big.txt', 1048576));
  await cold.close();
}
const warmup = Number(process.env.BENCH_MCP_WARMUP ?? 10);
for (let i = 0; i < Math.max(1, warmup); i += 1) for (const name of order) await scenarios[name]();
clientFaults = [];
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
const roundFaults = clientFaults;
clientFaults = [];
const alone = [];
for (let i = 0; i < Number(process.env.BENCH_MCP_ALONE ?? 20); i += 1) {
  await idle();
  alone.push(await readOn(client, 'big.txt', 1048576));
}
await client.close();
await served.close();
await before?.close();
await perExec.close();

const where = machine();
const { rows, docker } = printRows(samples, rounds, where);
console.log(`clients: ${shared ? 'in the bench process (BENCH_MCP_CLIENTS=shared), which forks docker exec between rounds' : 'each in a process of its own'}`);
fresh.sort((a, b) => a - b);
alone.sort((a, b) => a - b);
if (alone.length > 0)
  console.log(
    `${alone.length} 1 MiB read_file one after another on one server (as a client reads): median ${alone[alone.length >> 1].toFixed(0)} ms, p10 ${alone[Math.floor(alone.length * 0.1)].toFixed(0)}, p90 ${alone[Math.floor(alone.length * 0.9)].toFixed(0)}`,
  );
const medianOf = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
console.log(
  `the client process's minor page faults per 1 MiB read of the default server: in the rounds median ${medianOf(roundFaults)}, one after another median ${medianOf(clientFaults)} (~600 when the client's freed memory is reused as it is; ~3,000 after a fork or while its allocator warms up)`,
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
  JSON.stringify(
    {
      date: new Date().toISOString(),
      machine: where,
      clients: shared ? 'shared' : 'own',
      rounds,
      warmup,
      fresh,
      alone,
      clientFaults: { rounds: roundFaults, alone: clientFaults },
      rows,
      ratio: rows[0].median / docker,
    },
    null,
    2,
  ),
);
