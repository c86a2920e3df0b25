import { execFile } from 'node:child_process';
import { processAlive } from '../../src/state/process-alive.js';
import { connect, createServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { captureIO, MOAT_BIN, Scratch } from '../helpers/fixtures.js';

/** Sends `input` (then EOF) to host:port and collects the answer until the other side closes; an error's code otherwise. */
function talk(port: number, host = '127.0.0.1', input = ''): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect({ port, host }, () => socket.end(input));
    socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.on('close', () => resolve(answer));
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(`error ${error.code ?? error.message}`));
  });
}

/** Whether this process can listen on the port itself (it is free again). */
function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * `moat port`: a server inside a task without a network answers on the host, through the
 * engine's exec stream; only that task's loopback is reachable through it; closing, down and the
 * default loopback bind hold.
 */
describe('moat port', () => {
  const scratch = new Scratch();
  let moat: Moat;

  const serve = async (task: string, port: number, reply: string) => {
    const cap = captureIO();
    // socat in the background, detached from the exec's output so the exec returns.
    await moat.exec(
      task,
      ['sh', '-c', `setsid socat TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr ${reply} </dev/null >/dev/null 2>&1 & sleep 0.3`],
      cap.io,
      { sync: false },
    );
  };

  beforeAll(async () => {
    moat = scratch.moat();
    await moat.up({ task: 'a' });
    await moat.up({ task: 'b' });
    await serve('a', 3000, 'SYSTEM:"echo hello-from-a"');
    await serve('a', 3002, 'EXEC:cat');
    await serve('b', 3001, 'SYSTEM:"echo hello-from-b"');
  });
  afterAll(() => scratch.cleanup());

  it('a server inside a network-none task answers on a loopback port of the host; moat ls shows it', async () => {
    const open = await moat.openPort('a', 3000);
    expect(open.bind).toBe('127.0.0.1');
    expect(await talk(open.hostPort)).toBe('hello-from-a\n');
    // Both ways, with the client's end of input passed on (an echo server answers, then closes).
    const echo = await moat.openPort('a', 3002);
    expect(await talk(echo.hostPort, '127.0.0.1', 'ping through the exec stream\n')).toBe('ping through the exec stream\n');
    const listed = (await moat.ls()).find((t) => t.name === 'a')!;
    expect(listed.ports.map((p) => [p.port, p.bind, p.hostPort])).toEqual([
      [3000, '127.0.0.1', open.hostPort],
      [3002, '127.0.0.1', echo.hostPort],
    ]);
    expect((await moat.ls()).find((t) => t.name === 'b')!.ports).toEqual([]);
  });

  it('the default bind is loopback: the host port is not on its other addresses', async () => {
    const open = (await moat.ls()).find((t) => t.name === 'a')!.ports[0]!;
    const external = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal);
    expect(external, 'this host has a non-loopback IPv4 address').toBeDefined();
    expect(await talk(open.hostPort, external!.address)).toMatch(/^error ECONNREFUSED/);
  });

  it("another task's port is not reachable through it: only the task's own loopback", async () => {
    // Task b listens on 3001; task a does not. a's forward of 3001 reaches a's loopback: nothing there.
    const open = await moat.openPort('a', 3001);
    expect(await talk(open.hostPort)).toBe('');
    // A host port in use (here by a's forward): an error when it was asked for; else any free port.
    await expect(moat.openPort('b', 3001, { hostPort: open.hostPort })).rejects.toMatchObject({
      code: 'E_USAGE',
      message: expect.stringContaining('EADDRINUSE'),
    });
    await moat.closePort('a', 3001);
    // Free as closePort returns (the forwarder closes its socket before it exits).
    expect(await free(open.hostPort)).toBe(true);
    const blocker = createServer();
    // If something else holds 3001 already, it blocks just as well.
    await new Promise<void>((resolve) => blocker.once('error', () => resolve()).listen(3001, '127.0.0.1', () => resolve()));
    const ofB = await moat.openPort('b', 3001).finally(() => blocker.close());
    expect(ofB.hostPort).not.toBe(3001);
    expect(await talk(ofB.hostPort)).toBe('hello-from-b\n');
    await moat.closePort('b', 3001);
  });

  it('closing frees the host port and stops the forwarder; a bad port is one line with exit 2', async () => {
    const open = (await moat.ls()).find((t) => t.name === 'a')!.ports.find((p) => p.port === 3000)!;
    expect(await moat.closePort('a', 3000)).toBe(true);
    // Exited (a zombie until its parent reaps it counts: its files are closed).
    expect(processAlive(open.pid)).toBe(false);
    expect(await free(open.hostPort)).toBe(true);
    expect(await talk(open.hostPort)).toMatch(/^error ECONNREFUSED/);
    expect(await moat.closePort('a', 3000)).toBe(false);
    const cli = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [MOAT_BIN, 'port', 'a', '70000'], { cwd: scratch.repo, env: scratch.env() }, (error, _stdout, stderr) =>
        resolve({ code: (error as { code?: number } | null)?.code ?? 0, stderr }),
      ),
    );
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('port 70000 is not a TCP port');
  });

  it("down closes the task's ports", async () => {
    const chosen = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const open = await moat.openPort('a', 3000, { hostPort: chosen });
    expect(open.hostPort).toBe(chosen);
    expect(await talk(open.hostPort)).toBe('hello-from-a\n');
    await moat.down('a');
    // Exited (a zombie until its parent reaps it counts: its files are closed).
    expect(processAlive(open.pid)).toBe(false);
    expect(await free(open.hostPort)).toBe(true);
    expect((await moat.ls()).find((t) => t.name === 'a')!.ports).toEqual([]);
  });
});
