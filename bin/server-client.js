'use strict';
// The thin client of the warm CLI server (src/cli/server.ts, which documents the wire format;
// the frame layout here must match its frame()).
const { createHash } = require('node:crypto');
const { lstatSync, mkdirSync, statSync, unlinkSync, writeFileSync } = require('node:fs');
const { connect } = require('node:net');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

/**
 * Commands that need no terminal: a warm server may run them (src/cli/server.ts). rm asks before
 * discarding commits, so only a forced or --json rm goes there; exec and run only without --tty.
 */
const SERVED = new Set(['up', 'down', 'reset', 'ls', 'gc', 'rm', 'exec', 'run']);
const STREAMING = new Set(['exec', 'run']);
// Commands that stop at Ctrl-C (or TERM): the signal is carried to the server, which cancels them
// (up rolls back what it had made). Elsewhere the signal ends this client as usual, and the
// command, short and harmless, finishes on the server.
const CANCELLABLE = new Set(['exec', 'run', 'up']);
// Differ between shells of one session without changing what a command does.
const VOLATILE = new Set(['PWD', 'OLDPWD', '_', 'SHLVL']);

// Paths the CLI reads from the environment; a relative one means something else in another directory.
const PATH_VARIABLES = ['MOAT_HOME', 'MOAT_CONFIG', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME', 'XDG_CACHE_HOME', 'XDG_RUNTIME_DIR', 'HOME'];

function servedCommand(argv) {
  const command = argv[2];
  if (process.env.MOAT_SERVER === 'off' || !SERVED.has(command)) return false;
  if (PATH_VARIABLES.some((name) => process.env[name] && !process.env[name].startsWith('/'))) return false;
  const options = argv.includes('--') ? argv.slice(3, argv.indexOf('--')) : argv.slice(3);
  if (command === 'rm') return options.includes('-f') || options.includes('--force') || options.includes('--json');
  if (command === 'exec') return !options.includes('-t') && !options.includes('--tty');
  if (command === 'run') return !options.includes('--tty');
  return true;
}

/**
 * The key of the server for exactly this build, this node and this environment. native/client.c
 * computes the same from the same bytes (each field ends with a NUL; the environment's entries
 * sorted as bytes), so that `moat exec` finds the server without starting Node: change both or neither.
 */
function serverKey(bundle) {
  const hash = createHash('sha256');
  const field = (value) => hash.update(Buffer.concat([Buffer.from(String(value)), Buffer.alloc(1)]));
  field('moat-server-2');
  for (const file of [bundle, process.execPath]) {
    const info = statSync(file, { bigint: true });
    field(file);
    field(info.mtimeNs);
    field(info.size);
  }
  field(process.getuid());
  const entries = Object.entries(process.env)
    .filter(([key]) => !VOLATILE.has(key) && key !== '')
    .map(([key, value]) => Buffer.from(`${key}=${value}`));
  for (const entry of entries.sort(Buffer.compare)) field(entry);
  return hash.digest('hex').slice(0, 32);
}

/** The socket of the server for exactly this build and environment, in a directory only this user can enter. */
function serverSocket(bundle) {
  const uid = process.getuid();
  const key = serverKey(bundle);
  const dir = join(process.env.XDG_RUNTIME_DIR || tmpdir(), `moat-${uid}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if (error.code !== 'EEXIST') return undefined;
  }
  const own = lstatSync(dir);
  // Somebody else's directory (made first, in a shared /tmp) is never used.
  if (!own.isDirectory() || own.uid !== uid || (own.mode & 0o077) !== 0) return undefined;
  return join(dir, `${key}.sock`);
}

/** Runs the command on a warm server; undefined when none answers (then it runs here). */
function runOnServer(socketPath) {
  // Only a socket of this user's own is a server of theirs (native/client.c also asks the kernel
  // whose process listens on it).
  try {
    const info = lstatSync(socketPath);
    if (!info.isSocket() || info.uid !== process.getuid()) return Promise.resolve(undefined);
  } catch {
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    let started = false;
    let done = false;
    let pending = Buffer.alloc(0);
    const waiting = new Set();
    const frame = (type, body) => {
      if (socket.destroyed) return;
      const head = Buffer.alloc(5);
      head.writeUInt8(type, 0);
      head.writeUInt32BE(body.length, 1);
      socket.write(Buffer.concat([head, body]));
    };
    socket.once('connect', () => {
      started = true;
      const stdinIsTTY = Boolean(process.stdin.isTTY);
      socket.write(`${JSON.stringify({ argv: process.argv, cwd: process.cwd(), stdinIsTTY })}\n`);
      if (CANCELLABLE.has(process.argv[2])) {
        let interrupts = 0;
        for (const signal of ['SIGINT', 'SIGTERM']) {
          process.on(signal, () => {
            interrupts += 1;
            if (interrupts > 1) process.exit(signal === 'SIGTERM' ? 143 : 130);
            frame(4, Buffer.from(signal === 'SIGINT' ? 'INT' : 'TERM'));
          });
        }
      }
      // As in a process of its own: a terminal's stdin is left alone without --tty.
      if (STREAMING.has(process.argv[2]) && !stdinIsTTY) {
        process.stdin.on('data', (chunk) => {
          frame(1, chunk);
          if (socket.writableNeedDrain) {
            process.stdin.pause();
            socket.once('drain', () => process.stdin.resume());
          }
        });
        process.stdin.once('end', () => frame(2, Buffer.alloc(0)));
      }
    });
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5) {
        const length = pending.readUInt32BE(1);
        if (pending.length < 5 + length) break;
        const type = pending[0];
        const body = pending.subarray(5, 5 + length);
        pending = pending.subarray(5 + length);
        if (type === 1 || type === 2) {
          // A slow reader of our output slows the server's command down, not our memory.
          const out = type === 1 ? process.stdout : process.stderr;
          if (!out.write(body) && !waiting.has(out)) {
            waiting.add(out);
            socket.pause();
            out.once('drain', () => {
              waiting.delete(out);
              if (waiting.size === 0) socket.resume();
            });
          }
        } else if (type === 3) {
          done = true;
          socket.destroy();
          process.stdin.pause();
          return resolve(body.readInt32BE(0));
        }
      }
    });
    socket.on('error', () => {
      if (!started) resolve(undefined);
    });
    socket.once('close', () => {
      if (done) return;
      if (!started) return resolve(undefined);
      process.stderr.write(
        'moat: error: the moat server ended before the command finished\n  hint: check the task with moat ls before running it again; MOAT_SERVER=off runs each command in its own process\n',
      );
      resolve(70);
    });
  });
}

/** Starts a server for the next commands, once: the first to take the start lock does it. */
function startServer(socketPath) {
  const lock = `${socketPath}.starting`;
  try {
    const stale = Date.now() - statSync(lock).mtimeMs > 10_000;
    if (!stale) return;
    unlinkSync(lock);
  } catch {
    // No lock: nobody is starting one.
  }
  try {
    writeFileSync(lock, '', { flag: 'wx', mode: 0o600 });
  } catch {
    return;
  }
  require('node:child_process')
    .spawn(process.execPath, [join(__dirname, 'moat.js'), '__serve', socketPath], { detached: true, stdio: 'ignore' })
    .unref();
}

module.exports = { runOnServer, servedCommand, serverKey, serverSocket, startServer };
