import { createConnection, createServer, type Socket } from 'node:net';
import { unlink, utimes, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { main } from './main.js';
import { endAll } from './output.js';
import { MAX_SPARES_PER_SERVER, poolSize, TaskPool } from '../service/task-pool.js';
import { maxServers, retireExcessServers, retirableFile, RETIRE_SIGNAL } from '../service/warm-servers.js';
import { PendingSyncs } from '../service/pending-sync.js';
import { RepositoryCache } from '../workspace/user-repo.js';
import { ProcessCaches } from '../service/process-caches.js';
import { setSpareGate } from '../engine/background-gate.js';
import { startProgramsFromHelper } from '../workspace/spawner.js';

/**
 * The CLI kept warm: runs commands without a terminal (up, down, ls, exec and run without --tty,
 * …) for thin clients (bin/moat.js), so that they do not each pay a Node start. A server only
 * ever serves the environment it was started with: the client picks the socket by a hash of its
 * environment and of this build, under a directory only its user can enter; each request brings
 * just argv, cwd and whether the caller's stdin is a terminal.
 *
 * Wire format, after one JSON request line: frames of a type byte, a 32-bit length and the bytes.
 * Server to client: 1 stdout, 2 stderr, 3 exit (a 32-bit status). Client to server: 1 stdin,
 * 2 end of stdin, 4 a signal ("INT" or "TERM").
 */
export const FRAME = { stdout: 1, stderr: 2, exit: 3, stdin: 1, stdinEnd: 2, signal: 4 } as const;
const MAX_REQUEST_BYTES = 256 * 1024;

interface Request {
  argv: string[];
  cwd: string;
  stdinIsTTY: boolean;
}

export async function serve(socketPath: string, options: { idleSeconds: number }): Promise<void> {
  const server = createServer({ allowHalfOpen: true }, (connection) => void handle(connection));
  // MOAT_POOL=off: the warm server, but no task made ahead (no container waits in the background);
  // MOAT_POOL=N: N made ahead per request shape. A bad value makes nothing ahead here: every
  // command refuses it (main.ts) before anything would be taken.
  const spares = (() => {
    try {
      return poolSize(process.env.MOAT_POOL);
    } catch {
      return 0;
    }
  })();
  const pool = spares > 0 ? new TaskPool(MAX_SPARES_PER_SERVER, spares) : undefined;
  // A spare's engine steps wait for the commands being served, as its host-side ones do.
  if (pool) setSpareGate(() => pool.quiet());
  // Git and the other programs start from a helper forked now, while this heap is small: a fork
  // of the server itself stalls its loop, and the commands it serves with it (spawner.ts).
  const stopSpawner = startProgramsFromHelper();
  // Syncs of execs whose status went out first; they finish before the server exits.
  const syncs = new PendingSyncs();
  const repos = new RepositoryCache();
  const caches = new ProcessCaches();
  let active = 0;
  let idleTimer: NodeJS.Timeout | undefined;
  // Past the servers' cap (warm-servers.ts): stop at the first moment no command is running.
  let retiring = false;
  const armIdle = () => {
    clearTimeout(idleTimer);
    if (active > 0) return;
    if (retiring) return void shutDown();
    // Quiet now: make what the last commands will want next, then wait for the next client.
    pool?.makeWanted();
    idleTimer = setTimeout(() => void shutDown(), options.idleSeconds * 1000);
  };
  let stopping = false;
  const shutDown = async () => {
    if (stopping) return;
    stopping = true;
    clearTimeout(idleTimer);
    server.close();
    await unlink(socketPath).catch(() => undefined);
    // Commands under way finish (a while at most: a stop is a stop), and nothing made ahead
    // outlives the server.
    for (let waited = 0; active > 0 && waited < 30_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
    await syncs.waitAll();
    await pool?.close();
    stopSpawner();
    // The pid file goes last: once it is gone, so is everything else of this server (a reader
    // that waits for it, gc or the cap's sweep, never sees a retirable file without its server).
    await unlink(retirableFile(socketPath)).catch(() => undefined);
    await unlink(`${socketPath}.pid`).catch(() => undefined);
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutDown());
  process.once('SIGINT', () => void shutDown());
  process.on(RETIRE_SIGNAL, () => {
    retiring = true;
    armIdle();
  });

  async function handle(connection: Socket): Promise<void> {
    active += 1;
    clearTimeout(idleTimer);
    // Spares being made wait at their next host-side step until this command's first output is
    // out, or it ends (TaskPool.hold): a claim has the event loop to itself.
    const release = pool?.hold() ?? (() => undefined);
    let statusSent = () => undefined as void;
    const sent = new Promise<void>((resolve) => (statusSent = resolve));
    try {
      const request = await readRequest(connection);
      if (!request) {
        connection.destroy();
        return;
      }
      const stdin = new PassThrough();
      const signals = new Set<(signal: 'INT' | 'TERM') => void>();
      // A Ctrl-C that came before the command listened (while it loaded its config, say) is not
      // lost: the first listener gets it, as a process of its own would have been stopped by it.
      let unheard: 'INT' | 'TERM' | undefined;
      let waitingForDrain = false;
      readFrames(connection, request.rest, (type, body) => {
        // A command that reads slowly slows the client down, rather than filling this process.
        if (type === FRAME.stdin && !stdin.write(body) && !waitingForDrain) {
          waitingForDrain = true;
          connection.pause();
          stdin.once('drain', () => {
            waitingForDrain = false;
            connection.resume();
          });
        } else if (type === FRAME.stdinEnd) stdin.end();
        else if (type === FRAME.signal) {
          const signal = body.toString() === 'TERM' ? 'TERM' : 'INT';
          if (signals.size === 0) unheard ??= signal;
          for (const listener of [...signals]) listener(signal);
        }
      });
      // A client that went away sends nothing more.
      connection.once('close', () => stdin.end());
      const stdout = frameWriter(connection, FRAME.stdout, release);
      const stderr = frameWriter(connection, FRAME.stderr);
      // An exec waits for the syncs of its own task only (service/exec.ts); anything else sees
      // every commit home first.
      if (request.argv[2] !== 'exec') await syncs.waitAll();
      const code = await main(request.argv, {
        stdout,
        stderr,
        stdin,
        stdinIsTTY: request.stdinIsTTY,
        onSignal: (listener) => {
          signals.add(listener);
          if (unheard) {
            const signal = unheard;
            unheard = undefined;
            queueMicrotask(() => listener(signal));
          }
          return () => signals.delete(listener);
        },
        // The client leaves by itself at a second Ctrl-C; the command here finishes and is recorded.
        abort: () => undefined,
        local: false,
        cwd: request.cwd,
        pool,
        syncs,
        statusSent: sent,
        repos,
        caches,
      }).catch(() => 70);
      // Everything the command printed goes out before its status.
      await endAll([stdout, stderr]);
      const status = Buffer.alloc(4);
      status.writeInt32BE(code, 0);
      connection.end(frame(FRAME.exit, status), () => statusSent());
      // A client gone early does not hold the sync back.
      connection.once('close', () => statusSent());
    } catch {
      connection.destroy();
      statusSent();
    } finally {
      release();
      active -= 1;
      // The pid file's time says when this server last served: the least recently used goes first.
      const now = new Date();
      await utimes(`${socketPath}.pid`, now, now).catch(() => undefined);
      armIdle();
    }
  }

  if (!(await listen(server, socketPath))) return;
  await writeFile(`${socketPath}.pid`, `${process.pid}\n`, { mode: 0o600 });
  // The RETIRE_SIGNAL handler is in place (above): other servers may ask this one to stop.
  await writeFile(retirableFile(socketPath), `${process.pid}\n`, { mode: 0o600 });
  armIdle();
  // One more environment, one more server: the least recently used past the cap are asked to stop.
  await retireExcessServers(dirname(socketPath), socketPath, maxServers(process.env)).catch(() => undefined);
}

/** Binds the socket; a live server already there wins, a stale socket file is replaced. */
async function listen(server: ReturnType<typeof createServer>, socketPath: string): Promise<boolean> {
  const attempt = () =>
    new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
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

/** The request line, and whatever the client sent after it. */
function readRequest(connection: Socket): Promise<(Request & { rest: Buffer }) | undefined> {
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const newline = data.indexOf(0x0a);
      if (newline < 0 && data.length < MAX_REQUEST_BYTES) return;
      connection.off('data', onData);
      connection.pause();
      try {
        const parsed = JSON.parse(data.subarray(0, newline).toString('utf8')) as Partial<Request>;
        const argv = parsed.argv;
        if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string') || typeof parsed.cwd !== 'string') return resolve(undefined);
        resolve({ argv, cwd: parsed.cwd, stdinIsTTY: parsed.stdinIsTTY === true, rest: data.subarray(newline + 1) });
      } catch {
        resolve(undefined);
      }
    };
    connection.on('data', onData);
    connection.once('end', () => resolve(undefined));
    connection.once('error', () => resolve(undefined));
  });
}

function readFrames(connection: Socket, initial: Buffer, onFrame: (type: number, body: Buffer) => void): void {
  let pending = initial;
  const drain = () => {
    while (pending.length >= 5) {
      const length = pending.readUInt32BE(1);
      if (pending.length < 5 + length) return;
      const type = pending[0]!;
      const body = pending.subarray(5, 5 + length);
      pending = pending.subarray(5 + length);
      onFrame(type, body);
    }
  };
  connection.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    drain();
  });
  connection.on('error', () => undefined);
  connection.resume();
  drain();
}

/** One frame: its type, its length, its bytes. */
function frame(type: number, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** Every write becomes one frame on the connection, in order; a slow client holds the writer back. */
function frameWriter(connection: Socket, type: number, onWrite?: () => void): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      const written = connection.destroyed || connection.write(frame(type, chunk));
      // The first output is on its way (the server's hold on spares ends with it).
      onWrite?.();
      if (written) return done();
      const go = () => {
        connection.off('drain', go);
        connection.off('close', go);
        done();
      };
      connection.on('drain', go);
      connection.on('close', go);
    },
  });
}
