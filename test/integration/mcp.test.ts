import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { gitIn, MOAT_BIN, Scratch, sh } from '../helpers/fixtures.js';
import { call, mcpClient, RAW_UNSAFE } from '../helpers/mcp-client.js';

/**
 * `moat mcp` driven by the SDK's own client over a real stdio pipe, against real sandboxes:
 * every tool, its results, its errors and its progress notifications.
 */
describe('moat mcp: the tools over stdio', () => {
  const scratch = new Scratch();
  let client: Client;
  let close: () => Promise<void>;
  let task = '';

  beforeAll(async () => {
    ({ client, close } = await mcpClient(scratch));
    const created = await call(client, 'create_task', { title: 'Fix the login\x1b[2K bug', template: 'shell' });
    expect(created.isError, created.text).toBe(false);
    task = created.data.task;
  }, 300_000);

  afterAll(async () => {
    await close?.();
    await scratch.cleanup();
  });

  it('lists every tool with a strict, described schema', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(
      [
        'command_status',
        'command_stop',
        'create_task',
        'delete_file',
        'diff_task',
        'edit_file',
        'egress_log',
        'list_files',
        'list_tasks',
        'pending_requests',
        'read_file',
        'remove_task',
        'request_host',
        'reset_task',
        'run_command',
        'show_task',
        'task_stats',
        'write_file',
      ].sort(),
    );
    for (const tool of tools) {
      expect(tool.description!.length).toBeGreaterThan(20);
      expect((tool.inputSchema as { additionalProperties?: boolean }).additionalProperties).toBe(false);
    }
    expect(tools.some((t) => /merge|push|allow/.test(t.name))).toBe(false);
  });

  it('creates a task named from its title, shows and lists it', async () => {
    expect(task).toMatch(/^fix-the-login-2k-bug-[0-9a-f]{4}$/);
    const shown = await call(client, 'show_task', { task });
    expect(shown.data).toMatchObject({ name: task, state: 'running', branch: `moat/${task}`, network: 'none', commits: 0, egress: { allowed: 0, denied: 0 } });
    expect(shown.data.limits.memoryBytes).toBeGreaterThan(0);
    const listed = await call(client, 'list_tasks', {});
    expect(listed.data.tasks.map((t: { name: string }) => t.name)).toContain(task);
    expect(gitIn(scratch.repo, 'branch', '--list', `moat/${task}`)).toContain(task);
  });

  it('runs a command: stdout, stderr, status, and its commit comes home', async () => {
    const ran = await call(client, 'run_command', {
      task,
      command: 'echo out; echo err >&2; echo hi > made.txt && git add made.txt && git commit -qm "made by mcp" && exit 3',
    });
    expect(ran.isError).toBe(false);
    expect(ran.data).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'err\n', truncated: false, timedOut: false });
    expect(ran.text).toContain('exit 3');
    // The work comes home right after the result; the next call on the task waits for it.
    expect((await call(client, 'show_task', { task })).data.commits).toBe(1);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', `moat/${task}`)).toBe('made by mcp');
  });

  it('states truncation and escapes what the sandbox printed', async () => {
    const big = await call(client, 'run_command', {
      task,
      command: 'head -c 300000 /dev/zero | tr "\\0" a; printf "\\033]52;c;aGk=\\007\\033[2K\\342\\200\\256end\\n"',
      outputBytes: 4096,
    });
    expect(big.data.truncated).toBe(true);
    expect(big.data.stdoutBytes).toBeGreaterThan(300000);
    expect(big.data.stdout.length).toBeLessThan(6000);
    expect(big.text).toMatch(/bytes left out/);
    expect(big.data.stdout).toContain('\\x1b]52;c;aGk=\\x07\\x1b[2K\\u202eend');
    expect(RAW_UNSAFE.test(big.text)).toBe(false);
    expect(RAW_UNSAFE.test(JSON.stringify(big.data))).toBe(false);
  });

  it('keeps a result of 1 MiB of controls on each stream within one message of the SDK client', async () => {
    // Escaped, 1 MiB of \x01 takes 5 MiB in JSON per stream and per copy (text and
    // structuredContent): 20 MiB, which the SDK's stdio client (10 MiB at most) would drop whole.
    const flood = await call(client, 'run_command', {
      task,
      command:
        'echo FIRST; head -c 1048576 /dev/zero | tr "\\0" "\\1"; echo; echo LAST; (echo ERR-FIRST; head -c 1048576 /dev/zero | tr "\\0" "\\2"; echo; echo ERR-LAST) >&2',
      outputBytes: 1024 * 1024,
    });
    expect(flood.isError, flood.text).toBe(false);
    expect(flood.data.exitCode).toBe(0);
    expect(flood.data.truncated).toBe(true);
    expect(flood.data.stdoutBytes).toBe(1048576 + 12);
    expect(flood.data.stderrBytes).toBe(1048576 + 20);
    expect(flood.data.stdout).toMatch(/^FIRST\n(\\x01)+\n\[… \d+ of 1048588 bytes left out …\]\n(\\x01)+\nLAST\n$/);
    expect(flood.data.stderr).toMatch(/^ERR-FIRST\n(\\x02)+\n\[… \d+ of 1048596 bytes left out …\]\n(\\x02)+\nERR-LAST\n$/);
    expect(flood.text).toMatch(/output cut to its first and last parts \(stdout 1048588 bytes, stderr 1048596 bytes in all\)/);
    expect(flood.text).toMatch(/redirect it to a file in the workspace/);
    expect(JSON.stringify(flood).length).toBeLessThan(10 * 1024 * 1024);
    // The connection survived: the next call is answered.
    expect((await call(client, 'run_command', { task, command: 'echo still' })).data.stdout).toBe('still\n');
  });

  it('reports progress of a long command and stops one at its time limit', async () => {
    const progress: Array<{ progress: number; message?: string }> = [];
    const slow = await call(client, 'run_command', { task, command: 'sleep 3; echo slept' }, { onprogress: (p) => progress.push(p) });
    expect(slow.data.stdout).toBe('slept\n');
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress[1]!.progress).toBeGreaterThan(progress[0]!.progress);
    expect(progress[0]!.message).toMatch(/running for \d+s/);
    const limited = await call(client, 'run_command', { task, command: 'echo started; sleep 60; echo never', timeoutSeconds: 1 });
    expect(limited.data).toMatchObject({ timedOut: true, stdout: 'started\n' });
    expect(limited.data.exitCode).not.toBe(0);
    expect(limited.text).toContain('time limit');
  });

  it('stops a command whose call the client cancels', async () => {
    const controller = new AbortController();
    const cancelled = client.callTool({ name: 'run_command', arguments: { task, command: 'sleep 321' } }, undefined, {
      signal: controller.signal,
      timeout: 60_000,
    });
    await new Promise((r) => setTimeout(r, 1500));
    controller.abort();
    await expect(cancelled).rejects.toThrow();
    let left = '';
    for (let i = 0; i < 50; i += 1) {
      left = (await call(client, 'run_command', { task, command: 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline; echo; done' })).data.stdout;
      if (!left.includes('sleep 321')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(left).not.toContain('sleep 321');
  });

  it('runs a command in the background: poll it, stop one', async () => {
    const started = await call(client, 'run_command', { task, command: 'sleep 1; echo finished', background: true });
    const handle = started.data.handle as string;
    expect(handle).toMatch(/^cmd-/);
    let status = await call(client, 'command_status', { handle });
    for (let i = 0; i < 100 && status.data.running; i += 1) {
      await new Promise((r) => setTimeout(r, 200));
      status = await call(client, 'command_status', { handle });
    }
    expect(status.data).toMatchObject({ running: false, exitCode: 0, stdout: 'finished\n' });
    const endless = await call(client, 'run_command', { task, command: 'echo going; sleep 300', background: true });
    const stopped = await call(client, 'command_stop', { handle: endless.data.handle });
    expect(stopped.data).toMatchObject({ stopped: true, running: false, stdout: 'going\n' });
    expect(stopped.data.durationMs).toBeLessThan(60_000);
    const unknown = await call(client, 'command_status', { handle: 'cmd-0000000000000000' });
    expect(unknown.isError).toBe(true);
  });

  it('writes, reads, lists, edits and deletes files in the workspace', async () => {
    expect((await call(client, 'write_file', { task, path: 'src/app.txt', content: 'hello world\nhello again\n' })).isError).toBe(false);
    const read = await call(client, 'read_file', { task, path: 'src/app.txt' });
    expect(read.data).toMatchObject({ content: 'hello world\nhello again\n', size: 24, truncated: false });
    const twice = await call(client, 'edit_file', { task, path: 'src/app.txt', search: 'hello', replace: 'bye' });
    expect(twice.isError).toBe(true);
    expect(twice.text).toMatch(/occurs 2 times/);
    expect((await call(client, 'edit_file', { task, path: 'src/app.txt', search: 'hello world', replace: 'goodbye world' })).data.replacements).toBe(1);
    expect((await call(client, 'read_file', { task, path: '/workspace/src/app.txt' })).data.content).toBe('goodbye world\nhello again\n');
    // The content crosses the pipe once: the first text item, every client's; its data in _meta, no structuredContent.
    const raw = await client.callTool({ name: 'read_file', arguments: { task, path: 'src/app.txt' } });
    expect(raw.structuredContent).toBeUndefined();
    expect(raw.content).toEqual([
      { type: 'text', text: 'goodbye world\nhello again\n' },
      { type: 'text', text: '(/workspace/src/app.txt: 26 bytes)' },
    ]);
    expect(raw._meta?.['moat/result']).toEqual({ path: '/workspace/src/app.txt', size: 26, truncated: false, encoding: 'text', shown: 26 });
    const bytes = Buffer.from([0, 1, 2, 0x1b, 0xff, 0xfe, 10]);
    await call(client, 'write_file', { task, path: 'bin.dat', base64: bytes.toString('base64') });
    expect(Buffer.from((await call(client, 'read_file', { task, path: 'bin.dat', encoding: 'base64' })).data.content, 'base64').equals(bytes)).toBe(true);
    const escaped = await call(client, 'read_file', { task, path: 'bin.dat' });
    expect(RAW_UNSAFE.test(escaped.text)).toBe(false);
    const cut = await call(client, 'read_file', { task, path: 'src/app.txt', maxBytes: 5 });
    expect(cut.data).toMatchObject({ content: 'goodb', truncated: true, size: 26 });
    // A page at a time: each result says where the next starts, and the pages make the file again,
    // a character the page limit would split left whole for the next page.
    const text = 'héllo wörld 😀 ümlaut\n'.repeat(3);
    await call(client, 'write_file', { task, path: 'pages.txt', content: text });
    for (const encoding of ['text', 'base64'] as const) {
      const pages: string[] = [];
      let offset: number | undefined = 0;
      for (let i = 0; offset !== undefined && i < 100; i += 1) {
        const page = await call(client, 'read_file', { task, path: 'pages.txt', offset, maxBytes: 5, encoding });
        expect(page.isError, page.text).toBe(false);
        expect(page.data).toMatchObject({ size: Buffer.byteLength(text), offset });
        expect(page.data.content).not.toContain('\ufffd');
        pages.push(page.data.content);
        expect(page.data.truncated).toBe(page.data.nextOffset !== undefined);
        if (page.data.nextOffset !== undefined) expect(page.text).toContain(`read on with offset ${page.data.nextOffset}`);
        offset = page.data.nextOffset;
      }
      expect(offset).toBeUndefined();
      expect(encoding === 'text' ? pages.join('') : Buffer.concat(pages.map((p) => Buffer.from(p, 'base64'))).toString()).toBe(text);
    }
    const past = await call(client, 'read_file', { task, path: 'pages.txt', offset: 10_000 });
    expect(past.data).toMatchObject({ content: '', truncated: false, shown: 0, offset: 10_000 });
    const listed = await call(client, 'list_files', { task, depth: 3 });
    const paths = listed.data.entries.map((e: { path: string }) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['src', 'src/app.txt', 'bin.dat', 'made.txt']));
    expect(paths.some((p: string) => p.startsWith('.git'))).toBe(false);
    expect(listed.data.entries.find((e: { path: string }) => e.path === 'src').type).toBe('directory');
    expect((await call(client, 'delete_file', { task, path: 'src' })).isError).toBe(true);
    expect((await call(client, 'delete_file', { task, path: 'src', recursive: true })).isError).toBe(false);
    expect((await call(client, 'read_file', { task, path: 'src/app.txt' })).text).toMatch(/does not exist/);
    expect((await call(client, 'delete_file', { task, path: '.git', recursive: true })).isError).toBe(true);
  });

  it('diffs with review flags, and serves the diff and egress log as resources', async () => {
    await call(client, 'run_command', { task, command: 'ln -s /etc/passwd pw && git add pw && git commit -qm link' });
    const diff = await call(client, 'diff_task', { task });
    expect(diff.data.commits).toBe(2);
    expect(diff.data.flagged.map((f: { path: string }) => f.path)).toContain('pw');
    expect(diff.data.patch).toContain('made.txt');
    expect(diff.data.patchTruncated).toBe(false);
    const { resources } = await client.listResources();
    expect(resources.map((r) => r.uri)).toEqual(expect.arrayContaining([`moat://tasks/${task}/diff`, `moat://tasks/${task}/egress`]));
    const patch = await client.readResource({ uri: `moat://tasks/${task}/diff` });
    expect((patch.contents[0] as { text: string }).text).toContain('+hi');
    const egress = await client.readResource({ uri: `moat://tasks/${task}/egress` });
    expect((egress.contents[0] as { text: string }).text).toBe('');
    await expect(client.readResource({ uri: 'file:///etc/passwd' })).rejects.toThrow(/unknown resource/);
    expect((await call(client, 'egress_log', { task })).data).toMatchObject({ total: 0, records: [] });
    const stats = await call(client, 'task_stats', { task });
    expect(stats.data).toMatchObject({ task, running: true });
    expect(stats.data.limits.pids).toBeGreaterThan(0);
  });

  it('answers protocol errors with JSON-RPC errors and keeps serving', async () => {
    await expect(client.callTool({ name: 'merge_task', arguments: { task } })).rejects.toThrow(/-32602.*human's to do \(moat merge/);
    await expect(client.callTool({ name: 'no_such_tool', arguments: {} })).rejects.toThrow(/-32602.*unknown tool/);
    await expect(client.callTool({ name: 'run_command', arguments: { task, command: 42 } })).rejects.toThrow(/-32602.*invalid arguments/);
    await expect(client.callTool({ name: 'show_task', arguments: { task, bogus: 1 } })).rejects.toThrow(/-32602.*no argument "bogus"/);
    expect((await call(client, 'show_task', { task })).data.name).toBe(task);
  });

  it('resets a task, and removes only one whose commits were merged', async () => {
    const reset = await call(client, 'reset_task', { task });
    expect(reset.data.state).toBe('running');
    expect((await call(client, 'run_command', { task, command: 'cat made.txt' })).data.stdout).toBe('hi\n');
    const refused = await call(client, 'remove_task', { task });
    expect(refused.isError).toBe(true);
    expect(refused.text).toMatch(/moat merge/);
    expect(gitIn(scratch.repo, 'branch', '--list', `moat/${task}`)).toContain(task);
    const empty = await call(client, 'create_task', { title: 'empty' });
    const removed = await call(client, 'remove_task', { task: empty.data.task });
    expect(removed.isError, removed.text).toBe(false);
    expect(gitIn(scratch.repo, 'branch', '--list', `moat/${empty.data.task}`)).toBe('');
  });

  it('runs 20 concurrent calls on 5 tasks without mixing their output', async () => {
    const tasks = [task];
    const made = await Promise.all([1, 2, 3, 4].map((i) => call(client, 'create_task', { title: `parallel ${i}` })));
    tasks.push(...made.map((m) => m.data.task as string));
    const calls = Array.from({ length: 20 }, (_, i) => ({ task: tasks[i % 5]!, marker: `call-${i}-${'x'.repeat(i * 50)}` }));
    const results = await Promise.all(
      calls.map((c) => call(client, 'run_command', { task: c.task, command: `for n in 1 2 3; do echo ${c.marker}; sleep 0.1; done; echo ${c.marker} >&2` })),
    );
    results.forEach((result, i) => {
      expect(result.isError, result.text).toBe(false);
      expect(result.data.stdout).toBe(`${calls[i]!.marker}\n`.repeat(3));
      expect(result.data.stderr).toBe(`${calls[i]!.marker}\n`);
      expect(result.data.task).toBe(calls[i]!.task);
    });
  });
});

describe('moat mcp: a broken or departing client', () => {
  const scratch = new Scratch();

  afterAll(async () => {
    await scratch.cleanup();
  });

  /**
   * The arguments README.md gives each client (Codex, Claude Code, Claude Desktop/Cursor): the
   * same everywhere, and what the servers below are started with (from another directory).
   */
  function readmeArgs(): string[] {
    const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## MCP:'), readme.indexOf('## How the git boundary works'));
    const json = JSON.parse(/```json\n([\s\S]*?)```/.exec(section)![1]!) as { mcpServers: { moat: { command: string; args: string[] } } };
    const toml = /\[mcp_servers\.moat\]\ncommand = "moat"\nargs = (\[.*\])/.exec(section)!;
    const claude = /claude mcp add moat -- moat (.*)/.exec(section)!;
    expect(json.mcpServers.moat.command).toBe('moat');
    expect(JSON.parse(toml[1]!)).toEqual(json.mcpServers.moat.args);
    expect(claude[1]!.split(' ')).toEqual(json.mcpServers.moat.args);
    return json.mcpServers.moat.args.map((arg) => (arg === '/path/to/your/repo' ? scratch.repo : arg));
  }

  /** A server on raw pipes, for what the SDK's client would never send. */
  function rawServer() {
    const child = spawn(process.execPath, [MOAT_BIN, ...readmeArgs()], { cwd: scratch.root, env: scratch.env(), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    const replies = () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { id?: unknown; result?: any; error?: { code: number; message: string } });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const send = (line: string) => child.stdin.write(`${line}\n`);
    const reply = async (id: number) => {
      for (let i = 0; i < 3000; i += 1) {
        const found = replies().find((r) => r.id === id);
        if (found) return found;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no reply ${id}`);
    };
    send(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      }),
    );
    send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
    return { child, send, reply, replies, exited };
  }

  it('answers malformed JSON-RPC with errors and keeps serving', async () => {
    const server = rawServer();
    await server.reply(0);
    server.send('{not json');
    server.send(JSON.stringify({ jsonrpc: '1.0', id: 7, method: 'tools/list' }));
    server.send(JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'no/such/method' }));
    server.send(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'list_tasks', arguments: 'not an object' } }));
    server.send(JSON.stringify({ jsonrpc: '2.0', id: 10, method: 'tools/list' }));
    expect((await server.reply(10)).result.tools.length).toBe(18);
    const replies = server.replies();
    expect(replies.find((r) => r.id === null && r.error?.code === -32700)).toBeDefined();
    expect(replies.find((r) => r.id === 7)?.error?.code).toBe(-32600);
    expect(replies.find((r) => r.id === 8)?.error?.code).toBe(-32601);
    expect((await server.reply(9)).error?.code).toBeDefined();
    server.child.stdin.end();
    expect(await server.exited).toBe(0);
  });

  it('leaves no half-made task when the client goes away during a create', async () => {
    const server = rawServer();
    await server.reply(0);
    server.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'create_task', arguments: { title: 'abandoned' } } }));
    server.child.stdin.end();
    expect(await server.exited).toBe(0);
    // Cancelled in time, the up rolled back; too late to cancel, the task is whole. Never between.
    const tasks = (await scratch.moat().ls()).filter((t) => t.name.startsWith('abandoned-'));
    const branches = gitIn(scratch.repo, 'branch', '--list', 'moat/abandoned-*');
    if (tasks.length === 0) expect(branches).toBe('');
    else expect(tasks[0]).toMatchObject({ state: 'running' });
    const gc = JSON.parse(sh(process.execPath, [MOAT_BIN, 'gc', '--json'], scratch.repo, scratch.env() as Record<string, string>));
    expect(gc).toEqual({ removedContainers: [], removedVolumes: [], removedTasks: [], removedSpares: [] });
  });

  it('stops a running command when the client goes away; its work comes home, nothing half-made stays', async () => {
    const server = rawServer();
    await server.reply(0);
    server.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'create_task', arguments: { title: 'leaving' } } }));
    const created = await server.reply(1);
    const task = created.result.structuredContent.task as string;
    const id = (await scratch.moat().ls()).find((t) => t.name === task)!.containerId!;
    expect(task).toMatch(/^leaving-/);
    server.send(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: {
          name: 'run_command',
          arguments: { task, command: 'echo w > work.txt && git add work.txt && git commit -qm "before the client left" && echo ready && sleep 600' },
        },
      }),
    );
    // The commit is made before the client leaves (the sandbox's own view says so).
    for (let i = 0; i < 100; i += 1) {
      const log = sh('docker', ['exec', id, 'git', '-C', '/workspace', 'log', '-1', '--format=%s'], scratch.root, {}).trim();
      if (log === 'before the client left') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const left = Date.now();
    server.child.stdin.end();
    expect(await server.exited).toBe(0);
    expect(Date.now() - left).toBeLessThan(30_000);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', `moat/${task}`)).toBe('before the client left');
    const processes = sh('docker', ['top', id], scratch.root, {});
    expect(processes).not.toContain('sleep 600');
    const gc = JSON.parse(sh(process.execPath, [MOAT_BIN, 'gc', '--json'], scratch.repo, scratch.env() as Record<string, string>));
    expect(gc).toEqual({ removedContainers: [], removedVolumes: [], removedTasks: [], removedSpares: [] });
  });
});
