import { readdir, readFile, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The warm CLI servers of one user (src/cli/server.ts): each distinct environment starts its own
 * (about 50 MB each, plus the tasks it makes ahead), so their number is capped. A server that
 * starts asks the least recently used ones past the cap to stop at their next quiet moment, and
 * removes the files of servers that died without doing so themselves.
 */
export const DEFAULT_MAX_SERVERS = 3;

/** `MOAT_SERVER_MAX` (at least 1), else 3. */
export function maxServers(env: NodeJS.ProcessEnv): number {
  const value = Number(env.MOAT_SERVER_MAX);
  return Number.isSafeInteger(value) && value >= 1 ? value : DEFAULT_MAX_SERVERS;
}

/** Where the servers' sockets live; bin/server-client.js picks the same (and checks it is the user's alone). */
export function serverDir(env: NodeJS.ProcessEnv, uid: number): string {
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `moat-${uid}`);
}

/** Asked of a server past the cap: stop as soon as no command is running (server.ts). */
export const RETIRE_SIGNAL = 'SIGUSR2';

/**
 * A server that handles RETIRE_SIGNAL says so in `<socket>.retirable` (its pid). Servers of moat
 * builds before the cap have no handler, and Node's default for SIGUSR2 ends the process, cutting
 * off the command it runs: those are never signalled (they stop when idle, as they always did).
 */
export function retirableFile(socket: string): string {
  return `${socket}.retirable`;
}

export interface WarmServer {
  pid: number;
  socket: string;
  /** When it last finished a command (the pid file's mtime). */
  lastUsedMs: number;
  /** It handles RETIRE_SIGNAL (retirableFile names its pid). */
  retirable: boolean;
}

/**
 * Is `pid` the server of `socket`? The pid file alone is not enough: after the server died, its
 * pid may have gone to another process of the user, which must never be signalled.
 */
async function isServer(pid: number, socket: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  const args = cmdline.split('\0');
  return args.includes('__serve') && args.includes(socket);
}

/**
 * The live servers in `dir`; with `clean`, the files of dead ones go (socket, pid file, start
 * lock). Nothing is touched while a start lock is younger than bin/server-client.js's 10 s: a
 * server is starting there, and its socket may be bound before its pid file is written.
 */
export async function warmServers(dir: string, options: { clean?: boolean } = {}): Promise<WarmServer[]> {
  const names = new Set(await readdir(dir).catch(() => [] as string[]));
  const sockets = new Set(
    [...names].filter((name) => /\.sock(\.pid|\.starting|\.retirable)?$/.test(name)).map((name) => name.replace(/\.(pid|starting|retirable)$/, '')),
  );
  const servers: WarmServer[] = [];
  const age = async (name: string) => {
    const info = await stat(join(dir, name)).catch(() => undefined);
    return info ? Date.now() - info.mtimeMs : Infinity;
  };
  for (const name of sockets) {
    const socket = join(dir, name);
    if (names.has(`${name}.pid`)) {
      const pid = Number.parseInt(await readFile(`${socket}.pid`, 'utf8').catch(() => ''), 10);
      const info = await stat(`${socket}.pid`).catch(() => undefined);
      if (pid > 0 && info && (await isServer(pid, socket))) {
        const retirable = Number.parseInt(await readFile(retirableFile(socket), 'utf8').catch(() => ''), 10) === pid;
        servers.push({ pid, socket, lastUsedMs: info.mtimeMs, retirable });
        continue;
      }
    }
    if (names.has(`${name}.starting`) && (await age(`${name}.starting`)) < 10_000) continue;
    // A socket without a pid file: its server is binding it (a moment), or died then.
    if (!names.has(`${name}.pid`) && names.has(name) && (await age(name)) < 10_000) continue;
    if (options.clean) for (const path of [socket, `${socket}.pid`, `${socket}.starting`, retirableFile(socket)]) await unlink(path).catch(() => undefined);
  }
  return servers;
}

/**
 * Keeps at most `max` servers: the least recently used others are asked to stop (each does when
 * no command of its own is running: a command under way is never cut). `self` is never asked.
 */
export async function retireExcessServers(
  dir: string,
  self: string,
  max: number,
  signal: (pid: number) => void = (pid) => process.kill(pid, RETIRE_SIGNAL),
): Promise<number[]> {
  const others = (await warmServers(dir, { clean: true })).filter((s) => s.socket !== self).sort((a, b) => a.lastUsedMs - b.lastUsedMs);
  const retired: number[] = [];
  // Every server counts towards the cap; only those that can retire quietly are asked to.
  for (const server of others.filter((s) => s.retirable).slice(0, Math.max(0, others.length + 1 - max))) {
    try {
      // Checked again right before the signal: the moments since the scan are all a reused pid gets.
      if (!(await isServer(server.pid, server.socket))) continue;
      signal(server.pid);
      retired.push(server.pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return retired;
}
