import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { findEngine } from '../../src/engine/find-engine.js';
import { gitIn, Scratch } from '../helpers/fixtures.js';
import { call, mcpClient } from '../helpers/mcp-client.js';

/**
 * The engine goes away under a running `moat mcp` (a restarted dockerd, a dropped connection to a
 * remote one): each call that needs it fails with one clear line, the server keeps answering,
 * nothing is left half-made, and once the engine is back the same server works again with the
 * work done before intact. The engine is reached through a socket of the test's own that it can cut.
 */
describe('moat mcp: the engine going away', () => {
  const scratch = new Scratch();
  const proxyPath = join(scratch.root, 'engine.sock');
  let engineSocket = '';
  let proxy: Server | undefined;
  const open = new Set<Socket>();
  let client: Client;
  let close: () => Promise<void>;
  let task = '';

  const engineUp = () =>
    new Promise<void>((resolve) => {
      proxy = createServer((inbound) => {
        const outbound = connect(engineSocket);
        open.add(inbound).add(outbound);
        for (const [a, b] of [
          [inbound, outbound],
          [outbound, inbound],
        ] as const) {
          a.pipe(b);
          a.on('error', () => b.destroy());
          a.on('close', () => {
            open.delete(a);
            b.destroy();
          });
        }
      });
      proxy.listen(proxyPath, resolve);
    });
  const engineDown = async () => {
    await new Promise<void>((resolve) => {
      proxy!.close(() => resolve());
      for (const socket of open) socket.destroy();
    });
  };

  beforeAll(async () => {
    const endpoint = await findEngine();
    engineSocket = (endpoint as { socketPath?: string }).socketPath ?? '/var/run/docker.sock';
    await engineUp();
    ({ client, close } = await mcpClient(scratch, { DOCKER_HOST: `unix://${proxyPath}` }));
    const created = await call(client, 'create_task', { title: 'survives', template: 'shell' });
    expect(created.isError, created.text).toBe(false);
    task = created.data.task;
    const ran = await call(client, 'run_command', { task, command: 'echo kept > kept.txt && git add kept.txt && git commit -qm "before the engine went"' });
    expect(ran.data.exitCode, ran.text).toBe(0);
  }, 300_000);

  afterAll(async () => {
    await close?.();
    proxy?.close();
    await scratch.cleanup();
  });

  it('each call needing the engine fails with one clear line; the server goes on answering', async () => {
    await engineDown();
    for (const [tool, args] of [
      ['run_command', { task, command: 'true' }],
      ['list_files', { task }],
      ['create_task', { title: 'half made', template: 'shell' }],
    ] as const) {
      const failed = await call(client, tool, args);
      expect(failed.isError, `${tool}: ${failed.text}`).toBe(true);
      expect(failed.text.split('\n')[0], tool).toMatch(/^E_ENGINE_\w+: .*engine/);
      expect(failed.text, tool).toMatch(/\nhint: /);
    }
    // Calls that need no engine still answer: read_file of a plain file is read by the host from
    // the task's workspace folder (src/mcp/host-read.ts), and the tool list.
    const read = await call(client, 'read_file', { task, path: 'kept.txt' });
    expect(read.isError, read.text).toBe(false);
    expect(read.data.content).toBe('kept\n');
    const listed = await client.listTools();
    expect(listed.tools.length).toBeGreaterThan(10);
  });

  it('once the engine is back, the same server works, the earlier work intact and nothing half-made', async () => {
    await engineUp();
    const ran = await call(client, 'run_command', { task, command: 'cat kept.txt' });
    expect(ran.isError, ran.text).toBe(false);
    expect(ran.data).toMatchObject({ exitCode: 0, stdout: 'kept\n' });
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', `moat/${task}`)).toBe('before the engine went');
    const tasks = (await call(client, 'list_tasks', {})).data.tasks.map((t: { name: string }) => t.name);
    expect(tasks).toEqual([task]);
    // gc finds nothing the failed create_task left behind.
    const gc = await scratch.moat({ env: { DOCKER_HOST: `unix://${proxyPath}` } }).gc();
    expect(gc).toEqual({ removedContainers: [], removedVolumes: [], removedTasks: [], removedSpares: [] });
  });
});
