import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ListenerHandoff } from '../../src/gateway/listener-handoff.js';
import { fdPass, HANDOFF_BINARY, type FdPass } from '../../src/gateway/native.js';
import { eventually } from '../helpers/fixtures.js';

const fdOf = (thing: Socket | Server) => (thing as unknown as { _handle: { fd: number } })._handle.fd;

function listening(host: string, path?: string): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer();
    if (path) server.listen(path, () => resolve(server));
    else server.listen(0, host, () => resolve(server));
  });
}

function portOf(server: Server): number {
  return (server.address() as { port: number }).port;
}

/** Connects to the handover socket and sends `fds`; resolves with what the gateway answered ('' when it closed). */
function handOver(native: FdPass, path: string, fds: number[]): Promise<{ answer: string; link: Socket }> {
  return new Promise((resolve, reject) => {
    const link = connect(path, () => {
      expect(native.sendDescriptors(fdOf(link), fds)).toBe(0);
    });
    link.on('error', reject);
    link.once('data', (chunk) => resolve({ answer: chunk.toString(), link }));
    link.once('close', () => resolve({ answer: '', link }));
  });
}

function reaches(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('data', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('close', () => resolve(false));
  });
}

/**
 * The gateway takes the proxy's listening socket from inside the sandbox: whatever the sandbox
 * sends is untrusted, and only one listening TCP socket on loopback may become a way in.
 */
describe('the listener handover', () => {
  const native = fdPass();
  const dir = mkdtempSync(join(tmpdir(), 'moat-handoff-'));
  const open: Array<{ close: () => unknown }> = [];
  afterEach(() => {
    for (const thing of open.splice(0)) thing.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function gateway(name: string): Promise<{ path: string; served: () => number }> {
    expect(native, 'the native parts are built (npm run build)').toBeDefined();
    let served = 0;
    const handoff = new ListenerHandoff(native!, (client) => {
      served += 1;
      client.end('served');
    });
    const path = join(dir, name);
    await handoff.listen(path);
    open.push(handoff);
    return { path, served: () => served };
  }

  it('serves connections on a loopback listener handed over, and answers the helper', async () => {
    const gw = await gateway('ok.sock');
    const sandbox = await listening('127.0.0.1');
    const port = portOf(sandbox);
    const { answer, link } = await handOver(native!, gw.path, [fdOf(sandbox)]);
    open.push({ close: () => link.destroy() });
    expect(answer).toBe('k');
    // The sandbox's own copy goes: what stays listening is the gateway's.
    sandbox.close();
    expect(await reaches(port)).toBe(true);
    expect(gw.served()).toBe(1);
  });

  it('refuses a file, a unix listener, a TCP socket that is not listening, a listener off loopback, and two at once', async () => {
    const gw = await gateway('bad.sock');
    const file = openSync(join(dir, 'a-file'), 'w');
    const unix = await listening('', join(dir, 'other.sock'));
    const wide = await listening('0.0.0.0');
    const good = await listening('127.0.0.1');
    const client = await new Promise<Socket>((resolve) => {
      const s = connect(portOf(good), '127.0.0.1', () => resolve(s));
    });
    const other = await listening('127.0.0.1');
    open.push(unix, wide, good, other, { close: () => client.destroy() }, { close: () => closeSync(file) });
    for (const fds of [[file], [fdOf(unix)], [fdOf(client)], [fdOf(wide)], [fdOf(good), fdOf(other)]]) {
      const { answer } = await handOver(native!, gw.path, fds);
      expect(answer, `handed over ${fds.length} descriptor(s)`).toBe('');
    }
    expect(gw.served()).toBe(0);
  });

  it('a new handover replaces the last, and a listener goes when its link closes', async () => {
    const gw = await gateway('swap.sock');
    const first = await listening('127.0.0.1');
    const second = await listening('127.0.0.1');
    const [firstPort, secondPort] = [portOf(first), portOf(second)];
    const one = await handOver(native!, gw.path, [fdOf(first)]);
    first.close();
    expect(await reaches(firstPort)).toBe(true);
    const two = await handOver(native!, gw.path, [fdOf(second)]);
    second.close();
    expect(two.answer).toBe('k');
    // The first listener is closed, and so is the link that brought it.
    await new Promise((resolve) => (one.link.destroyed ? resolve(undefined) : one.link.once('close', resolve)));
    expect(await reaches(firstPort)).toBe(false);
    expect(await reaches(secondPort)).toBe(true);
    two.link.destroy();
    // The gateway drops the listener when it reads the link's end: waited for, not guessed at.
    expect(
      await eventually(
        () => reaches(secondPort),
        (reached) => !reached,
      ),
    ).toBe(false);
  });

  it('a flood of silent connections is closed without waiting on each', async () => {
    const gw = await gateway('flood.sock');
    const silent = await Promise.all(
      Array.from(
        { length: 10 },
        () =>
          new Promise<Socket>((resolve) => {
            const s = connect(gw.path, () => resolve(s));
          }),
      ),
    );
    open.push(...silent.map((s) => ({ close: () => s.destroy() })));
    const closed = await Promise.all(
      silent.map(
        (s) =>
          new Promise<boolean>((resolve) => {
            s.once('close', () => resolve(true));
            setTimeout(() => resolve(false), 300);
          }),
      ),
    );
    // Past the few that may wait for a message, the rest are closed at once.
    expect(closed.filter(Boolean).length).toBeGreaterThanOrEqual(6);
    const sandbox = await listening('127.0.0.1');
    open.push(sandbox);
    for (const s of silent) s.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await handOver(native!, gw.path, [fdOf(sandbox)])).answer).toBe('k');
  });

  it("moat's helper hands its listener over, and again to a gateway that comes back", async () => {
    const path = join(dir, 'helper.sock');
    const free = await listening('127.0.0.1');
    const port = portOf(free);
    free.close();
    const first = await gateway('helper.sock');
    const helper = spawn(HANDOFF_BINARY, [path, String(port)], { stdio: 'ignore' });
    open.push({ close: () => helper.kill('SIGKILL') });
    expect(await eventually(() => reaches(port), Boolean, 5000)).toBe(true);
    expect(first.served()).toBeGreaterThan(0);
    // The gateway goes (its socket file with it) and a new one takes the same path.
    const handoff = open.find((thing) => thing instanceof ListenerHandoff)!;
    handoff.close();
    open.splice(open.indexOf(handoff), 1);
    const second = await gateway('helper.sock');
    expect(await eventually(async () => (await reaches(port)) && second.served() > 0, Boolean, 5000)).toBe(true);
  });

  it('without a gateway to take it, the helper runs the fallback instead', async () => {
    const free = await listening('127.0.0.1');
    const port = String(portOf(free));
    free.close();
    const out = execFileSync(HANDOFF_BINARY, [join(dir, 'missing.sock'), port, '--', 'sh', '-c', 'echo "fallback on $1"', 'sh', port], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 10_000,
    });
    expect(out.trim()).toBe(`fallback on ${port}`);
  });
});
