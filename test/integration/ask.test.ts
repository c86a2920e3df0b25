import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Moat } from '../../src/index.js';
import { DnsStub } from '../helpers/dns-stub.js';
import { captureIO, eventually, MOAT_BIN, Scratch } from '../helpers/fixtures.js';
import { call, mcpClient } from '../helpers/mcp-client.js';

/**
 * `moat up --ask` (the human's flag turns egress.ask on for one task, with no egress.ask in any
 * config) holds a connection for a human's answer. An agent asking for a host over MCP (request_host): it only puts a standing request in the
 * queue that `moat egress --pending` lists and `moat allow` / `moat deny` answer. The tool grants
 * nothing, answers nothing, and refuses what would widen.
 */
describe('asking for a host: moat up --ask and moat mcp request_host', () => {
  const scratch = new Scratch();
  const dns = new DnsStub({ 'allowed.test': '127.0.0.1', 'ask.test': '127.0.0.1' });
  let upstream: Server;
  let port = 0;
  let moat: Moat;
  let client: Client;
  let close: () => Promise<void>;

  /** The real CLI, in its own process (no warm server), in the scratch repository. */
  const cli = (args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      execFile(
        process.execPath,
        [MOAT_BIN, ...args],
        { cwd: scratch.repo, env: scratch.env({ MOAT_SERVER: 'off', MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}` }) },
        (error, out, err) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, out, err }),
      );
    });

  /** The refusal's text: a tool error, or a JSON-RPC error (arguments outside the schema); undefined if the call succeeded. */
  const refused = async (name: string, args: Record<string, unknown>): Promise<string | undefined> => {
    try {
      const result = await call(client, name, args);
      return result.isError ? result.text : undefined;
    } catch (error) {
      return (error as Error).message;
    }
  };

  beforeAll(async () => {
    await dns.start();
    upstream = createServer((req, res) => res.end(`upstream saw ${req.url}\n`));
    port = await new Promise<number>((resolve) => upstream.listen(0, '127.0.0.1', () => resolve((upstream.address() as { port: number }).port)));
    // No egress.ask anywhere: only --ask turns it on.
    scratch.writeConfig('egress:\n  askSeconds: 45\n  allow: [allowed.test, 127.0.0.1/32]\n');
    moat = scratch.moat({ env: { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}` } });
    ({ client, close } = await mcpClient(scratch, { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}` }));
  }, 300_000);

  afterAll(async () => {
    await close?.();
    upstream?.close();
    dns.stop();
    await scratch.cleanup();
  });

  it('moat up --ask holds a curl for an undecided host until `moat allow --once` lets it through', async () => {
    const none = await cli(['up', '--task', 'quiet', '--ask', '--network', 'none']);
    expect(none.code).toBe(2);
    expect(none.err).toContain('--ask is for tasks with a network');
    expect((await moat.ls()).map((t) => t.name)).not.toContain('quiet');

    const up = await cli(['up', '--task', 'asks', '--ask', '--json']);
    expect(up.code, up.err).toBe(0);
    expect(JSON.parse(up.out)).toMatchObject({ name: 'asks', network: 'allowlist', ask: true });
    const cap = captureIO();
    const held = moat
      .exec('asks', ['sh', '-c', `curl -sS -m 50 http://ask.test:${port}/held 2>&1; echo "exit=$?"`], cap.io, { sync: false })
      .then(() => cap.out());
    const waiting = await eventually(
      () => moat.pending(),
      (p) => p.some((r) => r.task === 'asks' && r.host === 'ask.test'),
      15_000,
    );
    expect(waiting.map((r) => `${r.task} ${r.host}`)).toContain('asks ask.test');
    const answered = await cli(['allow', 'asks', 'ask.test', '--once']);
    expect(answered.code, answered.err).toBe(0);
    expect(await held).toContain('upstream saw /held');
    // Once means once: the policy did not change.
    expect((await moat.context.store.get((await moat.context.repo()).key, 'asks'))?.egress?.allow).not.toContain(`ask.test:${port}`);

    // The same config without --ask refuses the host at once: nothing waits.
    await moat.up({ task: 'plain', network: 'allowlist' });
    const refusedCurl = captureIO();
    await moat.exec('plain', ['sh', '-c', `curl -sS -m 20 http://ask.test:${port}/plain 2>&1; echo "exit=$?"`], refusedCurl.io, { sync: false });
    expect(refusedCurl.out()).toContain('not in allowlist: ask.test');
    expect(await moat.pending({ repoKey: (await moat.context.repo()).key, task: 'plain' })).toEqual([]);
  }, 300_000);

  it('request_host queues a standing request that the human lists and answers; the tool grants and answers nothing', async () => {
    const created = await call(client, 'create_task', { title: 'needs a registry', template: 'shell', network: 'allowlist' });
    expect(created.isError, created.text).toBe(false);
    const task = created.data.task as string;

    const asked = await call(client, 'request_host', { task, host: 'Registry.Example.com', reason: 'npm install needs the registry' });
    expect(asked.isError, asked.text).toBe(false);
    expect(asked.data).toMatchObject({ status: 'queued', rule: 'registry.example.com', human: { allow: `moat allow ${task} registry.example.com` } });
    expect(asked.text).toContain('moat egress --pending');
    // Asking again does not add a second request.
    expect((await call(client, 'request_host', { task, host: 'registry.example.com' })).data).toMatchObject({ status: 'waiting', id: asked.data.id });

    const listed = await cli(['egress', '--pending', '--json']);
    expect(listed.code, listed.err).toBe(0);
    const rows = listed.out
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(rows).toEqual([
      expect.objectContaining({ task, host: 'registry.example.com', port: 443, method: 'MCP', standing: true, reason: 'npm install needs the registry' }),
    ]);
    const mine = await call(client, 'pending_requests', { task });
    expect(mine.data.requests).toEqual([expect.objectContaining({ host: 'registry.example.com', standing: true })]);

    // Nothing was granted by asking.
    const key = (await moat.context.repo()).key;
    expect((await moat.context.store.get(key, task))?.egress?.allow).not.toContain('registry.example.com');
    // The client cannot answer: no tool for it, and no argument that grants.
    await expect(client.callTool({ name: 'answer_request', arguments: { task, id: asked.data.id } })).rejects.toThrow(/human's to do/);
    for (const extra of [{ allow: true }, { answer: 'task' }, { once: true }]) {
      expect(await refused('request_host', { task, host: 'other.example.com', ...extra })).toMatch(/refused over MCP[^]*only the human/);
    }
    // "once" has no connection to let through: refused, the request stays.
    const once = await cli(['allow', task, 'registry.example.com', '--once']);
    expect(once.code).toBe(2);
    expect(once.err).toContain('ahead of any connection');
    expect(await moat.pending({ repoKey: key, task })).toHaveLength(1);

    const allowed = await cli(['allow', task, 'registry.example.com']);
    expect(allowed.code, allowed.err).toBe(0);
    expect(await moat.pending({ repoKey: key, task })).toEqual([]);
    expect((await moat.context.store.get(key, task))?.egress?.allow).toContain('registry.example.com');
    expect((await call(client, 'request_host', { task, host: 'registry.example.com' })).data).toMatchObject({ status: 'allowed' });
    // A human's deny answers a request too, and a denied host cannot be asked for again.
    await call(client, 'request_host', { task, host: 'denied.example.com' });
    expect((await cli(['deny', task, 'denied.example.com'])).code).toBe(0);
    expect(await moat.pending({ repoKey: key, task })).toEqual([]);
    expect(await refused('request_host', { task, host: 'denied.example.com' })).toContain('denies denied.example.com');
  }, 300_000);

  it('request_host refuses a task without a network, and hostile hosts and reasons', async () => {
    const created = await call(client, 'create_task', { title: 'offline', template: 'shell' });
    expect(created.isError, created.text).toBe(false);
    const offline = await refused('request_host', { task: created.data.task, host: 'registry.example.com' });
    expect(offline).toContain('only a task with an allowlist network can ask');
    expect(offline).toContain('moat allow');

    const online = (await moat.ls()).find((t) => t.network === 'allowlist' && t.name.startsWith('needs-a-registry'))!.name;
    for (const host of ['127.1', '*.example.com', 'a.example.com:22', 'evil\u001b[2K.example.com', 'x'.repeat(300), '10.0.0.1', 'a..example.com']) {
      expect(await refused('request_host', { task: online, host }), host).toBeDefined();
    }
    for (const reason of ['hide\u001b[1A this', 'bidi \u202e txt', 'r'.repeat(501), 'two\nlines']) {
      expect(await refused('request_host', { task: online, host: 'fine.example.com', reason }), JSON.stringify(reason.slice(0, 20))).toBeDefined();
    }
    expect(await moat.pending({ repoKey: (await moat.context.repo()).key, task: online })).toEqual([]);
  }, 300_000);
});
