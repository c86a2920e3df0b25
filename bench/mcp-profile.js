// Where the time of a read_file of 1 MiB goes (issue 15): each stage timed on its own, in this
// process, on the same task and file. Prints medians in ms. Not a test: nothing asserts a time.
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { ReadBuffer } from '@modelcontextprotocol/sdk/shared/stdio.js';
import { benchHome } from './repo.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 10);
const { repo, env } = await benchHome('moat-bench-mcpprof-', () => ({ MOAT_SERVER: 'off' }));
const { Moat } = await import('../dist/moat.js');
const { FileServers } = await import('../dist/mcp/file-server.js');
const { WorkspaceFiles } = await import('../dist/mcp/workspace-files.js');
const { SafeText } = await import('../dist/mcp/safe-text.js');
const { fitContent } = await import('../dist/mcp/result-budget.js');

const moat = new Moat({ cwd: repo, env, progress: () => undefined });
const record = await moat.up({ title: 'prof' });
const task = record.name;
const sink = { write: () => true };
const { PassThrough } = await import('node:stream');
const out = new PassThrough().resume();
await moat.exec(task, ['sh', '-c', 'head -c 786432 /dev/urandom | base64 -w 76 | head -c 1048576 > big.txt'], { stdout: out, stderr: out });
void sink;

const servers = new FileServers();
const files = new WorkspaceFiles(moat.context, servers);
const viaServer = new WorkspaceFiles(new Moat({ cwd: repo, env: { ...env, MOAT_MCP_HOST_READ: 'off' }, progress: () => undefined }).context, servers);
const time = async (run) => {
  const start = process.hrtime.bigint();
  const value = await run();
  return [Number(process.hrtime.bigint() - start) / 1e6, value];
};
const samples = {};
const add = (name, ms) => (samples[name] ??= []).push(ms);
await files.read(task, 'big.txt');
await viaServer.read(task, 'big.txt');
const safe = new SafeText(new Set(['s3cr3t-value']));
for (let i = 0; i < rounds; i += 1) {
  const [served] = await time(() => viaServer.read(task, 'big.txt'));
  add('1a. read through the sandbox file server (host <- exec stream <- perl)', served);
  const [read, file] = await time(() => files.read(task, 'big.txt'));
  add('1b. read by the host (host-read.ts; the same checks, no exec stream)', read);
  const [fit, fitted] = await time(() => fitContent(file.content, 'text'));
  add('2. fitContent (decode + measure escapes)', fit);
  const [lines, text] = await time(() => safe.lines(fitted.content));
  add('3. safe.lines(content) (redact + escape for terminals)', lines);
  const meta = { path: file.path, size: file.size, truncated: false, encoding: 'text', shown: fitted.used };
  // Now: the content once (the first text item), its data in _meta. Before: also in structuredContent.
  const now = {
    content: [
      { type: 'text', text },
      { type: 'text', text: 'note' },
    ],
    _meta: { 'moat/result': meta },
  };
  const before = { content: now.content, structuredContent: { ...meta, content: text } };
  const [stringify, line] = await time(() => JSON.stringify({ jsonrpc: '2.0', id: 1, result: now }));
  add(`4. JSON.stringify of the response (${(line.length / 1048576).toFixed(1)} MiB)`, stringify);
  const [parse, parsed] = await time(() => JSON.parse(line));
  add('5. client JSON.parse', parse);
  // The SDK's stdio client (ReadBuffer) gets the line in pipe reads of 64 KiB, concatenates its
  // whole buffer at each, and parses it with JSON.parse and zod.
  const readBuffer = (json) => {
    const reader = new ReadBuffer();
    const bytes = Buffer.from(`${json}\n`);
    for (let at = 0; at < bytes.length; at += 65536) {
      reader.append(bytes.subarray(at, at + 65536));
      reader.readMessage();
    }
  };
  const [buffered] = await time(() => readBuffer(line));
  add('6. client ReadBuffer: 64 KiB reads, concatenated, parsed (includes 5)', buffered);
  const twice = JSON.stringify({ jsonrpc: '2.0', id: 1, result: before });
  const [bufferedTwice] = await time(() => readBuffer(twice));
  add(`6b. the same, the content twice as before (${(twice.length / 1048576).toFixed(1)} MiB)`, bufferedTwice);
  const [zod] = await time(() => CallToolResultSchema.parse(parsed.result));
  add('7. client zod CallToolResultSchema.parse', zod);
}
await servers.stopAll();
await moat.rm(task, { force: true });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [name, xs] of Object.entries(samples)) console.log(`${median(xs).toFixed(1).padStart(8)} ms  ${name}`);
