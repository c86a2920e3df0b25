import type { ServerResponse } from 'node:http';
import { readAuditLines, readAuditTail, type AuditCursor, type AuditRecord } from '../gateway/audit.js';
import type { TaskRecord } from '../domain/task.js';
import type { MoatContext } from '../service/context.js';
import { auditFile } from '../service/egress.js';
import { pendingOfTasks } from '../service/pending.js';

/**
 * The live view's feed (Server-Sent Events): every task's new egress attempts and the pending
 * requests, read from the files the gateway writes, one reader for all connected pages. It polls
 * only while a page listens, and sends batches (one event per tick, not one per attempt): a task
 * flooding its gateway costs the dashboard one read per tick, not one message per attempt, and the
 * gateway does not know the dashboard exists (it never waits for a page).
 *
 * The dashboard shares the machine's cores with the gateway, so a tick's cost is kept to what is
 * new: the task list is read again only when a task folder comes or goes (or every RELIST_MS), a
 * quiet task's log costs one stat, a page opens on the ends of the logs, and only the lines shown
 * are parsed. Memory is bounded: a cursor per task, at most MAX_BATCH records per tick (shared
 * fairly between tasks, the newest of each; the rest is counted as not shown and said so), a
 * page that reads slowly or not at all is sent counts instead of rows until it catches up (what
 * waits for it stays near BEHIND_BYTES), and past MAX_BUFFERED a page is dropped.
 */
export const TICK_MS = 300;
export const MAX_BATCH = 500;
/** How many of the latest attempts a page opens on. */
const BACKLOG = 200;
const MAX_BUFFERED = 4 * 1024 * 1024;
/**
 * A page with this much still unsent is behind: it is sent no rows (only how many it missed)
 * until it has caught up, and the feed never waits for it.
 */
const BEHIND_BYTES = 512 * 1024;
/** A task whose record changed in place (no folder came or went) is seen within this. */
const RELIST_MS = 2_000;

type LiveRecord = AuditRecord & { repoKey: string };

interface Watched {
  record: TaskRecord;
  file: string;
}

export class LiveFeed {
  private readonly clients = new Set<ServerResponse>();
  /** Rows not sent to a page that was behind, said in its next batch. */
  private readonly missed = new Map<ServerResponse, number>();
  private readonly cursors = new Map<string, AuditCursor | undefined>();
  private tasks: Watched[] = [];
  private listed = { stamp: '', at: 0 };
  private timer?: NodeJS.Timeout;
  private lastPending = '';
  private ticking = false;

  constructor(private readonly ctx: MoatContext) {}

  async add(res: ServerResponse): Promise<void> {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
    res.write(': moat\n\n');
    // The first page starts from the logs' ends, not where an earlier one left off.
    if (this.clients.size === 0) this.cursors.clear();
    await this.refreshTasks();
    // A new page starts with the latest attempts of every task.
    const backlog = await this.backlog();
    this.write(res, frame('egress', { records: backlog, dropped: 0 }));
    const pending = this.pending();
    if (this.clients.size === 0) this.lastPending = pending;
    this.write(res, `event: pending\ndata: ${pending}\n\n`);
    this.clients.add(res);
    res.on('close', () => {
      this.clients.delete(res);
      this.missed.delete(res);
      if (this.clients.size === 0) this.stop();
    });
    if (!this.timer) this.timer = setInterval(() => void this.tick(), TICK_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const res of this.clients) res.end();
    this.clients.clear();
    this.missed.clear();
    this.cursors.clear();
    this.listed = { stamp: '', at: 0 };
  }

  private write(res: ServerResponse, text: string): void {
    if (res.writableLength > MAX_BUFFERED) {
      res.destroy();
      return;
    }
    res.write(text);
  }

  /** A batch of rows, serialised once for every page that keeps up; a page that is behind is told what it missed. */
  private sendRows(records: LiveRecord[], dropped: number): void {
    let text: string | undefined;
    for (const res of this.clients) {
      const missed = this.missed.get(res) ?? 0;
      if (res.writableLength > BEHIND_BYTES) {
        this.missed.set(res, missed + records.length + dropped);
        continue;
      }
      if (missed > 0) {
        this.missed.delete(res);
        this.write(res, frame('egress', { records, dropped: dropped + missed }));
      } else this.write(res, (text ??= frame('egress', { records, dropped })));
    }
  }

  /** Serialised once for every page. */
  private broadcast(text: string): void {
    for (const res of this.clients) this.write(res, text);
  }

  private async refreshTasks(): Promise<void> {
    const stamp = this.ctx.store.listingStamp();
    if (stamp === this.listed.stamp && Date.now() - this.listed.at < RELIST_MS) return;
    // Stamped before listing: a task added meanwhile changes the next stamp, and is listed then.
    this.tasks = (await this.ctx.store.listAll()).map((record) => ({ record, file: auditFile(this.ctx, record) }));
    this.listed = { stamp, at: Date.now() };
    const files = new Set(this.tasks.map((t) => t.file));
    for (const file of this.cursors.keys()) if (!files.has(file)) this.cursors.delete(file);
  }

  /** The pending requests of the tasks listed, as the page receives them. */
  private pending(): string {
    return JSON.stringify(
      pendingOfTasks(
        this.ctx,
        this.tasks.map((t) => t.record),
      ),
    );
  }

  private async backlog(): Promise<LiveRecord[]> {
    const all: LiveRecord[] = [];
    for (const { record, file } of this.tasks) {
      const { lines, cursor } = await readAuditTail(file, BACKLOG);
      if (!this.cursors.has(file)) this.cursors.set(file, cursor);
      all.push(...parse(lines, record.repoKey));
    }
    return all.sort(byTime).slice(-BACKLOG);
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      await this.refreshTasks();
      const fresh: Array<{ repoKey: string; lines: string[] }> = [];
      for (const { record, file } of this.tasks) {
        // A task that appeared since the page connected: its earlier lines are not news, but they are its first.
        const { lines, cursor } = this.cursors.has(file) ? await readAuditLines(file, this.cursors.get(file)) : await readAuditTail(file, MAX_BATCH);
        this.cursors.set(file, cursor);
        if (lines.length > 0) fresh.push({ repoKey: record.repoKey, lines });
      }
      const shares = fairShares(
        fresh.map((f) => f.lines.length),
        MAX_BATCH,
      );
      const records: LiveRecord[] = [];
      let dropped = 0;
      fresh.forEach(({ repoKey, lines }, i) => {
        dropped += lines.length - shares[i]!;
        records.push(...parse(lines.slice(lines.length - shares[i]!), repoKey));
      });
      if (records.length > 0 || dropped > 0) this.sendRows(records.sort(byTime), dropped);
      const pending = this.pending();
      if (pending !== this.lastPending) {
        this.lastPending = pending;
        this.broadcast(`event: pending\ndata: ${pending}\n\n`);
      }
    } catch {
      // A task removed mid-read: the next tick sees the home as it is.
    } finally {
      this.ticking = false;
    }
  }
}

/**
 * Splits `budget` rows between tasks so that one flooding task cannot crowd out a quiet one: in
 * order of need, each gets what it has, up to an equal part of what is left.
 */
export function fairShares(counts: number[], budget: number): number[] {
  const shares = counts.map(() => 0);
  const order = counts.map((_, i) => i).sort((a, b) => counts[a]! - counts[b]!);
  let left = budget;
  order.forEach((i, k) => {
    shares[i] = Math.min(counts[i]!, Math.floor(left / (order.length - k)));
    left -= shares[i];
  });
  return shares;
}

function parse(lines: string[], repoKey: string): LiveRecord[] {
  const records: LiveRecord[] = [];
  for (const line of lines) {
    try {
      // Its own fresh object: tagged in place, not copied.
      const record = JSON.parse(line) as LiveRecord;
      record.repoKey = repoKey;
      records.push(record);
    } catch {
      // A line cut by a crash of the gateway: the others still count.
    }
  }
  return records;
}

/** ISO times sort as plain strings (localeCompare would cost a collation per comparison). */
function byTime(a: LiveRecord, b: LiveRecord): number {
  return a.time < b.time ? -1 : a.time > b.time ? 1 : 0;
}

/** JSON has no raw newline: one data line per event. */
function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
