import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseDocument, type Document } from 'yaml';
import { MoatError } from '../errors.js';
import { processAlive } from '../state/process-alive.js';

/**
 * Changes the user's config file in place, safely against a crash and against other moat
 * processes doing the same (two answers "allow always" in the same second):
 * - a lock file beside it (`<file>.lock`, exclusive create, holding the owner's pid); a lock whose
 *   owner is dead is taken over so that it cannot block forever, in a way two takers cannot both win;
 * - the new text goes to a temp file in the same folder, is fsynced, and renamed over the old one
 *   (a crash leaves the old file or the new one), keeping the old file's mode;
 * - a link or anything but a regular file is refused: it could point the write at another file.
 * Comments and order survive (yaml's Document). `change` may throw to abort; nothing is written then.
 */
export async function updateUserConfig(file: string, change: (doc: Document) => void, options: { waitMs?: number } = {}): Promise<void> {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const release = await lock(`${file}.lock`, options.waitMs ?? 10_000);
  try {
    let mode = 0o600;
    let text = '';
    try {
      const info = lstatSync(file);
      if (!info.isFile()) throw new MoatError('E_CONFIG_INVALID', `${file} is not a regular file`, { hint: 'replace the link or folder with a plain file' });
      mode = info.mode & 0o777;
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const doc = parseDocument(text);
    if (doc.errors.length > 0) throw new MoatError('E_CONFIG_INVALID', `${file}: ${doc.errors[0]!.message.split('\n')[0]}`, { hint: 'fix your config first' });
    if (!doc.contents) doc.contents = doc.createNode({}) as never;
    change(doc);
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'wx', mode);
    try {
      writeSync(fd, doc.toString());
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(tmp, file);
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
    syncDir(dirname(file));
  } finally {
    release();
  }
}

/** Adds hosts to egress.allow of the user's config (once each). */
export function allowInUserConfig(file: string, hosts: string[]): Promise<void> {
  return updateUserConfig(file, (doc) => {
    const current = (doc.getIn(['egress', 'allow']) as { toJSON?: () => string[] } | undefined)?.toJSON?.() ?? [];
    const next = [...new Set([...current, ...hosts])];
    if (next.length !== current.length) doc.setIn(['egress', 'allow'], doc.createNode(next));
  });
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on a folder; the rename is still atomic.
  }
}

/**
 * Takes the lock: a file created exclusively, holding `pid token`. A lock whose pid is dead is
 * stale. Taking it over is itself guarded: the taker first creates `<lock>.takeover` exclusively
 * (one taker at a time), re-reads the lock and removes it only if it is still the same stale one.
 * A takeover file left by a dead taker is stale the same way.
 */
async function lock(path: string, waitMs: number): Promise<() => void> {
  const mine = `${process.pid} ${randomBytes(6).toString('hex')}\n`;
  const deadline = Date.now() + waitMs;
  for (let round = 0; ; round += 1) {
    if (tryCreate(path, mine)) {
      return () => {
        // Only our own lock is removed.
        if (readText(path) === mine) rmSync(path, { force: true });
      };
    }
    const held = readText(path);
    const pid = Number(held?.split(' ')[0]);
    if (held !== undefined && Number.isSafeInteger(pid) && pid > 0 && !processAlive(pid)) takeOver(path, held, mine);
    if (Date.now() > deadline) {
      throw new MoatError('E_CONFIG_INVALID', `${path} is held by process ${Number.isFinite(pid) ? pid : '?'}`, {
        hint: `another moat is changing your config; try again, or remove ${path} if no moat runs`,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(10 + round * 5, 100)));
  }
}

function takeOver(path: string, stale: string, mine: string): void {
  const guard = `${path}.takeover`;
  if (!tryCreate(guard, mine)) {
    const guardHeld = readText(guard);
    const guardPid = Number(guardHeld?.split(' ')[0]);
    // A taker that died between its two steps: its guard goes, the next round retries.
    if (guardHeld !== undefined && Number.isSafeInteger(guardPid) && guardPid > 0 && !processAlive(guardPid) && readText(guard) === guardHeld)
      rmSync(guard, { force: true });
    return;
  }
  try {
    if (readText(path) === stale) rmSync(path, { force: true });
  } finally {
    if (readText(guard) === mine) rmSync(guard, { force: true });
  }
}

function tryCreate(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
