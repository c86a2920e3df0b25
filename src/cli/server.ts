import { createConnection, createServer, type Socket } from 'node:net';
import { unlink, writeFile } from 'node:fs/promises';
import { main } from './main.js';

/**
 * The CLI kept warm: runs short commands (up, down, ls, …) for thin clients (bin/moat.js), so that
 * twenty parallel `moat up` do not pay twenty Node starts. A server only ever serves the
 * environment it was started with: the client picks the socket by a hash of its environment and
 * of this build, under a directory only its user can enter; each request brings just argv and cwd.
 *
 * Wire format: one JSON line {argv, cwd} in; frames out, each a type byte (1 stdout, 2 stderr,
 * 3 exit), a 32-bit length and the bytes; the exit frame carries the status as a 32-bit integer.
 */
export const FRAME = { stdout: 1, stderr: 2, exit: 3 } as const;
const MAX_REQUEST_BYTES = 256 * 1024;

export async function serve(socketPath: string, options: { idleSeconds: number }): Promise<void> {
  const server = createServer({ allowHalfOpen: true }, (connection) => void handle(connection));
  let active = 0;
  let idleTimer: NodeJS.Timeout | undefined;
  const armIdle = () => {
    clearTimeout(idleTimer);
    if (active === 0) idleTimer = setTimeout(() => shutDown(), options.idleSeconds * 1000).unref();
  };
  const shutDown = () => {
    server.close();
    void unlink(socketPath).catch(() => undefined);
    void unlink(`${socketPath}.pid`).catch(() => undefined);
  };
  process.once('SIGTERM', shutDown);
  process.once('SIGINT', shutDown);

  async function handle(connection: Socket): Promise<void> {
    active += 1;
    clearTimeout(idleTimer);
    try {
      const request = await readRequest(connection);
      if (!request) return;
      const stdout = frameWriter(connection, FRAME.stdout);
      const stderr = frameWriter(connection, FRAME.stderr);
      const code = await main(request.argv, { stdout, stderr, cwd: request.cwd }).catch(() => 70);
      const exit = Buffer.alloc(9);
      exit.writeUInt8(FRAME.exit, 0);
      exit.writeUInt32BE(4, 1);
      exit.writeInt32BE(code, 5);
      connection.end(exit);
    } catch {
      connection.destroy();
    } finally {
      active -= 1;
      armIdle();
    }
  }

  if (!(await listen(server, socketPath))) return;
  await writeFile(`${socketPath}.pid`, `${process.pid}\n`, { mode: 0o600 });
  armIdle();
}

/** Binds the socket; a live server already there wins, a stale socket file is replaced. */
async function listen(server: ReturnType<typeof createServer>, socketPath: string): Promise<boolean> {
  const attempt = () => new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    server.once('error', resolve);
    server.listen(socketPath, () => resolve(undefined));
  });
  let error = await attempt();
  if (error?.code === 'EADDRINUSE') {
    const alive = await new Promise<boolean>((resolve) => {
      const probe = createConnection(socketPath, () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (alive) return false;
    await unlink(socketPath).catch(() => undefined);
    error = await attempt();
  }
  return error === undefined;
}

function readRequest(connection: Socket): Promise<{ argv: string[]; cwd: string } | undefined> {
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const newline = data.indexOf(0x0a);
      if (newline < 0 && data.length < MAX_REQUEST_BYTES) return;
      connection.off('data', onData);
      try {
        const parsed = JSON.parse(data.subarray(0, newline).toString('utf8')) as { argv?: unknown; cwd?: unknown };
        const argv = parsed.argv;
        if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string') || typeof parsed.cwd !== 'string') return resolve(undefined);
        resolve({ argv: argv as string[], cwd: parsed.cwd });
      } catch {
        resolve(undefined);
      }
    };
    connection.on('data', onData);
    connection.once('end', () => resolve(undefined));
    connection.once('error', () => resolve(undefined));
  });
}

/** A stream-like writer whose every write becomes one frame on the connection, in order. */
function frameWriter(connection: Socket, type: number): NodeJS.WritableStream {
  const write = (chunk: string | Uint8Array) => {
    const body = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk);
    const head = Buffer.alloc(5);
    head.writeUInt8(type, 0);
    head.writeUInt32BE(body.length, 1);
    return connection.write(Buffer.concat([head, body]));
  };
  return { write, isTTY: false } as unknown as NodeJS.WritableStream;
}
