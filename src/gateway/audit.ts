import { closeSync, fstatSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { redact } from '../domain/redact.js';

/** One line of a task's egress audit log: every attempt, allowed or not. Never a secret value. */
export interface AuditRecord {
  time: string;
  task: string;
  method: string;
  host: string;
  port: number;
  /** The request's path, for requests the gateway reads (plain HTTP, inspected HTTPS); the query's content redacted. */
  path?: string;
  sni?: string;
  address?: string;
  /** On a route (http://moat.gateway/<route>/…): the status the upstream answered with. */
  status?: number;
  /** On a route: the upstream's response ended before its announced end (or before any answer). */
  cut?: true;
  decision: 'allowed' | 'denied';
  rule: string;
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
}

export const AUDIT_FILE = 'audit.jsonl';

/**
 * A task's audit log is a file the sandbox makes grow (one line per attempt, about 250 bytes for
 * a refusal), on the host and outside its disk cap: a loop of denied attempts would fill the
 * host's disk. So the file is rotated at this size to `<file>.1` (the older one is dropped), and
 * a task's log takes at most twice this on disk. `MOAT_AUDIT_MAX_BYTES` changes it when the
 * gateway starts.
 */
export const DEFAULT_AUDIT_MAX_BYTES = 8 * 1024 ** 2;
/** Below this, a rotation would keep too few lines to be worth reading. */
const MIN_AUDIT_MAX_BYTES = 16 * 1024;

/** The cap of one audit file: `MOAT_AUDIT_MAX_BYTES` (bytes) if set and sensible, else the default. */
export function auditMaxBytes(env: NodeJS.ProcessEnv = process.env): number {
  const value = Number(env.MOAT_AUDIT_MAX_BYTES);
  if (!Number.isSafeInteger(value) || value <= 0) return DEFAULT_AUDIT_MAX_BYTES;
  return Math.max(MIN_AUDIT_MAX_BYTES, value);
}

/** Where the older half of a task's log is kept. */
export function rotatedAuditFile(file: string): string {
  return `${file}.1`;
}

/**
 * Appends one line; when it would take the file past `maxBytes`, the file first becomes
 * `<file>.1` (replacing the older one) and the line starts a fresh file. Only the gateway writes
 * here, one line at a time, so a rotation races no other writer.
 */
export function appendAudit(file: string, record: AuditRecord, secrets: string[] = [], maxBytes = DEFAULT_AUDIT_MAX_BYTES): void {
  const line = Buffer.from(`${redact(JSON.stringify(record), secrets)}\n`, 'utf8');
  let fd = openSync(file, 'a', 0o600);
  try {
    const size = fstatSync(fd).size;
    if (size > 0 && size + line.length > maxBytes) {
      closeSync(fd);
      fd = -1;
      renameSync(file, rotatedAuditFile(file));
      fd = openSync(file, 'a', 0o600);
    }
    writeSync(fd, line);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

function parseLines(lines: string[]): AuditRecord[] {
  const records: AuditRecord[] = [];
  for (const line of lines) {
    try {
      records.push(JSON.parse(line) as AuditRecord);
    } catch {
      // A line cut by a crash of the gateway: the others still count.
    }
  }
  return records;
}

function splitLines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '');
}

function statOf(file: string): { ino: number; size: number } | undefined {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}

function inode(file: string): number | undefined {
  return statOf(file)?.ino;
}

async function readText(file: string, from = 0): Promise<{ text: string; end: number }> {
  const handle = await open(file, 'r').catch(() => undefined);
  if (!handle) return { text: '', end: from };
  try {
    const { size } = await handle.stat();
    if (size <= from) return { text: '', end: from };
    // Unfilled: only the bytes read are used.
    const buffer = Buffer.allocUnsafe(size - from);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, from);
    // Only whole lines: the rest is read when the gateway has finished writing it.
    const last = buffer.subarray(0, bytesRead).lastIndexOf(0x0a);
    return { text: buffer.subarray(0, last + 1).toString('utf8'), end: from + last + 1 };
  } finally {
    await handle.close();
  }
}

/** Where a reader of the log stands: the file it was reading (by inode) and how far. */
export interface AuditCursor {
  ino: number;
  offset: number;
}

/**
 * The records written since `cursor` (all that are kept, without one), oldest first, and the
 * cursor after them. Rotations are followed like `tail -F`: when the file read so far has become
 * `<file>.1`, its rest comes first.
 */
export async function readAudit(file: string, cursor?: AuditCursor): Promise<{ records: AuditRecord[]; cursor?: AuditCursor }> {
  const { lines, cursor: next } = await readAuditLines(file, cursor);
  return { records: parseLines(lines), cursor: next };
}

/**
 * `readAudit` without the parsing, for a reader that parses only some lines (the live feed under
 * a flood counts the rest). A file that has not grown since the cursor costs one stat: a reader
 * that polls many quiet tasks pays little for them.
 */
export async function readAuditLines(file: string, cursor?: AuditCursor): Promise<{ lines: string[]; cursor?: AuditCursor }> {
  if (cursor) {
    const now = statOf(file);
    if (now?.ino === cursor.ino && now.size === cursor.offset) return { lines: [], cursor };
  }
  const rotated = rotatedAuditFile(file);
  // A rotation between the reads would skip the lines it moved: read again then.
  for (let attempt = 0; ; attempt += 1) {
    const ino = inode(file);
    let older = '';
    if (cursor?.ino !== ino) {
      const rotatedIno = inode(rotated);
      // Rotated more than once since the cursor: what is kept is all there is.
      if (rotatedIno !== undefined) older = (await readText(rotated, cursor && rotatedIno === cursor.ino ? cursor.offset : 0)).text;
    }
    const newer = ino === undefined ? { text: '', end: 0 } : await readText(file, cursor?.ino === ino ? cursor.offset : 0);
    if (inode(file) === ino || attempt >= 3) {
      return { lines: [...splitLines(older), ...splitLines(newer.text)], cursor: ino === undefined ? cursor : { ino, offset: newer.end } };
    }
  }
}

/** At most this much of a file's end is read for its latest lines. */
const TAIL_BYTES = 256 * 1024;

/** The whole lines within the last `maxBytes` of a file, and where the last one ends. */
async function readEnd(file: string, maxBytes: number): Promise<{ lines: string[]; end: number; whole: boolean }> {
  const handle = await open(file, 'r').catch(() => undefined);
  if (!handle) return { lines: [], end: 0, whole: true };
  try {
    const { size } = await handle.stat();
    const from = Math.max(0, size - maxBytes);
    // Unfilled: only the bytes read are used.
    const buffer = Buffer.allocUnsafe(size - from);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, from);
    const read = buffer.subarray(0, bytesRead);
    const last = read.lastIndexOf(0x0a);
    // Started mid-file: the first line is cut.
    const first = from === 0 ? 0 : read.indexOf(0x0a) + 1;
    const text = first <= last ? read.subarray(first, last + 1).toString('utf8') : '';
    return { lines: splitLines(text), end: from + last + 1, whole: from === 0 };
  } finally {
    await handle.close();
  }
}

/**
 * The last `count` lines kept (fewer when they take more than TAIL_BYTES), unparsed, and the
 * cursor after them: where a reader that starts now begins. A page opening on logs of megabytes
 * reads their ends, not all of them.
 */
export async function readAuditTail(file: string, count: number): Promise<{ lines: string[]; cursor?: AuditCursor }> {
  for (let attempt = 0; ; attempt += 1) {
    const ino = inode(file);
    const newer = ino === undefined ? { lines: [], end: 0, whole: true } : await readEnd(file, TAIL_BYTES);
    // Fewer lines than asked in a file read whole: the older half comes before them.
    const older = newer.whole && newer.lines.length < count ? (await readEnd(rotatedAuditFile(file), TAIL_BYTES)).lines : [];
    if (inode(file) === ino || attempt >= 3) {
      return { lines: [...older, ...newer.lines].slice(-count), cursor: ino === undefined ? undefined : { ino, offset: newer.end } };
    }
  }
}

/** The bytes a task's audit log takes on disk (both files). */
export function auditBytes(file: string): number {
  let total = 0;
  for (const path of [file, rotatedAuditFile(file)]) {
    try {
      total += statSync(path).size;
    } catch {
      // not there
    }
  }
  return total;
}

/** Allowed and denied attempts still kept, counted without parsing (`moat ls` reads every task's log). */
export async function countAudit(file: string): Promise<{ allowed: number; denied: number }> {
  let allowed = 0;
  let denied = 0;
  for (const path of [rotatedAuditFile(file), file]) {
    // Inside a JSON string a quote is escaped, so only the field itself matches.
    for (const line of (await readText(path)).text.split('\n')) {
      if (line.includes('"decision":"allowed"')) allowed += 1;
      else if (line.includes('"decision":"denied"')) denied += 1;
    }
  }
  return { allowed, denied };
}
