import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Scratch } from '../helpers/fixtures.js';
import { call, mcpClient } from '../helpers/mcp-client.js';

/**
 * The MCP file tools' resident file server (src/mcp/file-server*.ts) against a workspace the
 * agent controls: links to the container's secrets and to the host's home, fifos, links to
 * devices, huge and endless files, and names swapped for links while the server walks them. Each
 * attack runs in a real sandbox; what the client gets and what the sandbox's other folders hold
 * afterwards are checked. The default client reads plain files on the host (src/mcp/host-read.ts)
 * and leaves the rest to the server; a second one always asks the server (MOAT_MCP_HOST_READ=off);
 * the one-exec-per-call path (MOAT_MCP_FILE_SERVER=off) gets the same link and fifo checks.
 */
describe('moat mcp: the resident file server against a hostile workspace', () => {
  const scratch = new Scratch();
  const userHome = join(scratch.root, 'user-home');
  const sshKey = join(userHome, '.ssh', 'id_rsa');
  let client: Client;
  let perExec: Client;
  let served: Client;
  let close: () => Promise<void>;
  let closePerExec: () => Promise<void>;
  let closeServed: () => Promise<void>;
  let task = '';
  const run = async (command: string) => {
    const result = await call(client, 'run_command', { task, command });
    expect(result.data.exitCode, result.text).toBe(0);
    return result.data.stdout as string;
  };

  beforeAll(async () => {
    mkdirSync(join(userHome, '.ssh'), { recursive: true, mode: 0o700 });
    writeFileSync(sshKey, 'HOST-SSH-KEY-MARKER\n', { mode: 0o600 });
    ({ client, close } = await mcpClient(scratch, { HOME: userHome }));
    ({ client: perExec, close: closePerExec } = await mcpClient(scratch, { HOME: userHome, MOAT_MCP_FILE_SERVER: 'off' }));
    ({ client: served, close: closeServed } = await mcpClient(scratch, { HOME: userHome, MOAT_MCP_HOST_READ: 'off' }));
    task = (await call(client, 'create_task', { title: 'hostile' })).data.task;
    await run(
      [
        'ln -s /etc/shadow l-shadow',
        'ln -s /etc/passwd l-passwd',
        `ln -s '${sshKey}' l-hostkey`,
        `ln -s '${userHome}' l-hosthome`,
        'ln -s /dev/zero l-zero',
        'ln -s /proc/self/fd/0 l-stdin',
        'ln -s /workspace/../etc/passwd l-dotdot',
        'ln -s l-loop2 l-loop1 && ln -s l-loop1 l-loop2',
        'mkfifo fifo',
        'truncate -s 100G sparse',
        'mkdir -p inside/deep && echo INSIDE > inside/deep/f.txt && ln -s /workspace/inside/deep l-abs-inside && ln -s inside/deep l-rel-inside',
        'echo NOREAD-MARKER > noread && chmod 000 noread',
      ].join(' && '),
    );
  }, 300_000);

  afterAll(async () => {
    await close?.();
    await closePerExec?.();
    await closeServed?.();
    await scratch.cleanup();
  });

  const outside = /leads out of the workspace/;

  it('follows links only inside the workspace, in every way of serving files', async () => {
    // client reads on the host where it can (host-read.ts) and leaves links to the sandbox's server; served always asks that server.
    for (const on of [client, served, perExec]) {
      for (const path of ['l-shadow', 'l-passwd', 'l-hostkey', 'l-hosthome/.ssh/id_rsa', 'l-zero', 'l-stdin', 'l-dotdot']) {
        const read = await call(on, 'read_file', { task, path, maxBytes: 4096 });
        expect(read.isError, `${path}: ${read.text}`).toBe(true);
        // One exec per call resolves the link with realpath, in the sandbox: a target the sandbox lacks "does not exist" there.
        expect(read.text).toMatch(on === perExec ? /leads out of the workspace|does not exist/ : outside);
        expect(read.text).not.toMatch(/root:x:0:0|HOST-SSH-KEY-MARKER/);
        const wrote = await call(on, 'write_file', { task, path, content: 'planted\n' });
        expect(wrote.isError, `write ${path}: ${wrote.text}`).toBe(true);
      }
      const listed = await call(on, 'list_files', { task, path: 'l-hosthome' });
      expect(listed.isError).toBe(true);
      expect(listed.text).not.toContain('.ssh');
      // Links that stay inside work, absolute or relative.
      expect((await call(on, 'read_file', { task, path: 'l-abs-inside/f.txt' })).data.content).toBe('INSIDE\n');
      expect((await call(on, 'read_file', { task, path: 'l-rel-inside/f.txt' })).data.content).toBe('INSIDE\n');
    }
    // A loop of links ends in an error, not in a server that spins.
    const loop = await call(client, 'read_file', { task, path: 'l-loop1' });
    expect(loop.isError).toBe(true);
    expect(readFileSync(sshKey, 'utf8')).toBe('HOST-SSH-KEY-MARKER\n');
  });

  it('reads no file the sandbox user cannot read, though moat itself could', async () => {
    for (const on of [client, served, perExec]) {
      const read = await call(on, 'read_file', { task, path: 'noread' });
      expect(read.isError, read.text).toBe(true);
      expect(read.text).not.toContain('NOREAD-MARKER');
    }
  });

  it('refuses a fifo at once instead of hanging, and keeps serving', async () => {
    for (const on of [client, served, perExec]) {
      const started = Date.now();
      const read = await call(on, 'read_file', { task, path: 'fifo' });
      expect(read.isError).toBe(true);
      expect(read.text).toMatch(/is not a regular file/);
      const edited = await call(on, 'edit_file', { task, path: 'fifo', search: 'a', replace: 'b' });
      expect(edited.isError).toBe(true);
      expect(Date.now() - started).toBeLessThan(20_000);
    }
    // Writing to it would block on the resident server (no reader): it is refused as not a file.
    const wrote = await call(client, 'write_file', { task, path: 'fifo', content: 'x' });
    expect(wrote.isError).toBe(true);
    expect(wrote.text).toMatch(/is not a file that can be written/);
    expect((await call(client, 'read_file', { task, path: 'inside/deep/f.txt' })).data.content).toBe('INSIDE\n');
  });

  it('keeps the size caps on huge and endless files', async () => {
    // The server reads at most 8 MiB; what goes out fits one message of the SDK's clients (10 MiB),
    // which close the connection on a longer one: the content is cut, and the result says so.
    for (const [on, encoding] of [client, served].flatMap(
      (c) =>
        [
          [c, 'base64'],
          [c, 'text'],
        ] as const,
    )) {
      const sparse = await call(on, 'read_file', { task, path: 'sparse', encoding });
      expect(sparse.data.size).toBe(100 * 1024 ** 3);
      expect(sparse.data.truncated).toBe(true);
      expect(sparse.text).toMatch(/only the first \d+ shown \(cut to fit one MCP message\)/);
      const shown = encoding === 'base64' ? Buffer.from(sparse.data.content, 'base64').length : sparse.data.content.length / 4;
      expect(shown).toBeGreaterThan(encoding === 'base64' ? 2 * 1024 ** 2 : 512 * 1024);
      expect(shown).toBeLessThanOrEqual(3 * 1024 ** 2);
    }
    const cut = await call(client, 'read_file', { task, path: 'sparse', maxBytes: 10, encoding: 'base64' });
    expect(Buffer.from(cut.data.content, 'base64').length).toBe(10);
    // A file that grows while it is read: what comes back stays within the cap.
    await run("sh -c 'while :; do echo endless; done' > grow.txt 2>/dev/null </dev/null & echo $! > grow.pid; sleep 1");
    for (const on of [client, served]) {
      const grow = await call(on, 'read_file', { task, path: 'grow.txt', maxBytes: 65536 });
      expect(grow.isError, grow.text).toBe(false);
      expect(grow.data.content.length).toBe(65536);
      expect(grow.data.truncated).toBe(true);
    }
    await run('kill $(cat grow.pid); rm -f grow.txt grow.pid');
  });

  it('never follows a name swapped for a link while it reads, lists or writes', async () => {
    // The sandbox swaps `d` (a folder with f.txt) and `f` (a file) for links to its /etc and
    // /tmp as fast as it can, while the client reads, lists and writes through them.
    await run(
      [
        'mkdir -p /tmp/outside && echo OUTSIDE > /tmp/outside/f.txt',
        'mkdir -p real && echo SWAPPED-INSIDE > real/f.txt && ln -s /etc/passwd lf && echo SWAPPED-FILE > rf',
        '(end=$(( $(date +%s) + 120 )); while [ $(date +%s) -lt $end ]; do ' +
          'rm -rf d; cp -a real d; rm -rf d; ln -s /tmp/outside d; ' +
          'cp -P lf f.l; mv -Tf f.l f; cp rf f.r; mv -Tf f.r f; done) >/dev/null 2>&1 </dev/null & echo $! > swap.pid',
      ].join(' && '),
    );
    const seen = new Set<string>();
    for (let i = 0; i < 150; i += 1) {
      const reader = i % 2 === 0 ? client : served;
      const read = await call(reader, 'read_file', { task, path: 'd/f.txt' });
      const file = await call(reader, 'read_file', { task, path: 'f' });
      const listed = await call(client, 'list_files', { task, path: 'd' });
      const wrote = await call(client, 'write_file', { task, path: `d/planted-${i}`, content: 'planted\n' });
      for (const result of [read, file, listed, wrote]) {
        expect(result.text).not.toMatch(/OUTSIDE|root:x:0:0/);
        seen.add(result.isError ? result.text.split(':')[0]! : 'ok');
      }
    }
    await run('kill $(cat swap.pid); sleep 0.5; rm -rf d f swap.pid');
    expect(await run('ls -A /tmp/outside')).toBe('f.txt\n');
    // The race ran: some calls got through the folder while it was one, some met the link.
    expect(seen.has('ok')).toBe(true);
    expect(seen.has('E_USAGE')).toBe(true);
  }, 300_000);

  it('starts a fresh server when the agent kills it', async () => {
    // served: its reads always go through the sandbox's server (client reads this file on the host).
    expect((await call(served, 'read_file', { task, path: 'inside/deep/f.txt' })).data.content).toBe('INSIDE\n');
    const killed = await call(client, 'run_command', { task, command: 'pkill -KILL -x perl; sleep 0.5; pgrep -x perl || echo none' });
    expect(killed.data.stdout).toBe('none\n');
    expect((await call(served, 'read_file', { task, path: 'inside/deep/f.txt' })).data.content).toBe('INSIDE\n');
    expect((await call(client, 'run_command', { task, command: 'pgrep -x perl | wc -l' })).data.stdout).toBe('1\n');
  });
});
