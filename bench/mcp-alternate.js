// Why a 1 MiB read_file is slower in a server whose reads alternate with other servers' (issue
// 15): the SDK's own client over real stdio pipes to four stand-in servers (bench/mcp-standin-
// server.js: moat's own answer path, no engine), 1 MiB read in turn from each, then one after
// another from one; page faults per read counted in the server. Each variant (a build, with or
// without moat mcp's malloc tunables, src/mcp/server-memory.ts) runs BENCH_RUNS times, the
// variants interleaved. No container: runs without the test lock.
//   node bench/mcp-alternate.js [OTHER_DIST]   (OTHER_DIST: e.g. main's build, /tmp/before/dist)
// Not a test: nothing asserts a time.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { serverEnvironment } from '../dist/mcp/server-memory.js';
import { bigTextFile } from './big-text.js';

const runs = Number(process.env.BENCH_RUNS ?? 3);
const rounds = Number(process.env.BENCH_ROUNDS ?? 8);
const here = join(import.meta.dirname, '..', 'dist');
const other = process.argv[2];
const { dir, file } = bigTextFile('moat-bench-alternate-');

const variants = {
  'this build, with moat mcp tunables': { dist: here, env: serverEnvironment(process.env) },
  'this build, without': { dist: here, env: process.env },
  ...(other ? { 'OTHER_DIST, as main runs it (without)': { dist: other, env: process.env } } : {}),
};

async function run({ dist, env }) {
  const faults = [];
  const connect = async () => {
    const client = new Client({ name: 'moat-bench', version: '1' });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [join(import.meta.dirname, 'mcp-standin-server.js')],
      env: { ...env, MOAT_DIST: dist },
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (chunk) => {
      for (const match of String(chunk).matchAll(/faults (\d+)/g)) faults.push(Number(match[1]));
    });
    await client.connect(transport);
    return client;
  };
  const servers = [];
  for (let i = 0; i < 4; i += 1) servers.push(await connect());
  const read = async (client) => {
    const start = performance.now();
    const result = await client.callTool({ name: 'read_file', arguments: { path: file } });
    if (result.content[0].text.length !== 1048576) throw new Error('short read');
    return performance.now() - start;
  };
  for (let i = 0; i < 3; i += 1) for (const s of servers) await read(s);
  faults.length = 0;
  const alternating = [];
  for (let i = 0; i < rounds; i += 1) for (const s of servers) alternating.push(await read(s));
  const alternatingFaults = faults.splice(0);
  const one = [];
  for (let i = 0; i < rounds * 2; i += 1) one.push(await read(servers[0]));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const oneFaults = faults.splice(0);
  for (const s of servers) await s.close();
  return { alternating, one, alternatingFaults, oneFaults };
}

const all = Object.fromEntries(Object.keys(variants).map((name) => [name, { alternating: [], one: [], alternatingFaults: [], oneFaults: [] }]));
for (let i = 0; i < runs; i += 1)
  for (const [name, variant] of Object.entries(variants)) {
    const got = await run(variant);
    for (const key of Object.keys(got)) all[name][key].push(...got[key]);
  }
rmSync(dir, { recursive: true, force: true });
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
const p10 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.1)] ?? NaN;
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
for (const [name, got] of Object.entries(all))
  console.log(
    `${name}: alternating median ${median(got.alternating).toFixed(0)} ms (p10 ${p10(got.alternating).toFixed(0)}), ${mean(got.alternatingFaults).toFixed(0)} faults/read; one server median ${median(got.one).toFixed(0)} ms (p10 ${p10(got.one).toFixed(0)}), ${mean(got.oneFaults).toFixed(0)} faults/read`,
  );
