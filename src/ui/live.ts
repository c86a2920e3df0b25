import type { ServerResponse } from 'node:http';
import { readAudit, type AuditCursor, type AuditRecord } from '../gateway/audit.js';
import type { MoatContext } from '../service/context.js';
import { auditFile } from '../service/egress.js';
import { listPending } from '../service/pending.js';

/**
 * The live view's feed (Server-Sent Events): every task's new egress attempts and the pending
 * requests, read from the files the gateway writes, one reader for all connected pages. It polls
 * only while a page listens, and sends batches (one event per tick, not one per attempt): a task
 * flooding its gateway costs the dashboard one read per tick, not one message per attempt, and the
 * gateway does not know the dashboard exists. Memory is bounded: a cursor per task, at most
 * MAX_BATCH records per tick (the rest is counted as dropped and said so), and each page's socket
 * buffer is capped (a page that does not read is dropped).
 */
export const TICK_MS = 300;
export const MAX_BATCH = 500;
const MAX_BUFFERED = 4 * 1024 * 1024;

export class LiveFeed {
  private readonly clients = new Set<ServerResponse>();
  private readonly cursors = new Map<string, AuditCursor | undefined>();
  private timer?: NodeJS.Timeout;
  private lastPending = '';
  private ticking = false;

  constructor(private readonly ctx: MoatContext) {}

  async add(res: ServerResponse): Promise<void> {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
    res.write(': moat\n\n');
    // A new page starts with the latest attempts of every task.
    const backlog = await this.backlog();
    this.send(res, 'egress', { records: backlog, dropped: 0 });
    const pending = await listPending(this.ctx);
    if (this.clients.size === 0) this.lastPending = JSON.stringify(pending);
    this.send(res, 'pending', pending);
    this.clients.add(res);
    res.on('close', () => {
      this.clients.delete(res);
      if (this.clients.size === 0) this.stop();
    });
    if (!this.timer) this.timer = setInterval(() => void this.tick(), TICK_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  private send(res: ServerResponse, event: string, data: unknown): void {
    if (res.writableLength > MAX_BUFFERED) {
      res.destroy();
      return;
    }
    // JSON has no raw newline: one data line per event.
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private broadcast(event: string, data: unknown): void {
    for (const res of this.clients) this.send(res, event, data);
  }

  private async backlog(): Promise<Array<AuditRecord & { repoKey: string }>> {
    const all: Array<AuditRecord & { repoKey: string }> = [];
    for (const record of await this.ctx.store.listAll()) {
      const file = auditFile(this.ctx, record);
      const { records, cursor } = await readAudit(file);
      if (!this.cursors.has(file)) this.cursors.set(file, cursor);
      all.push(...records.slice(-200).map((r) => ({ ...r, repoKey: record.repoKey })));
    }
    return all.sort((a, b) => a.time.localeCompare(b.time)).slice(-200);
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const fresh: Array<AuditRecord & { repoKey: string }> = [];
      let dropped = 0;
      for (const record of await this.ctx.store.listAll()) {
        const file = auditFile(this.ctx, record);
        const known = this.cursors.has(file);
        const { records, cursor } = await readAudit(file, this.cursors.get(file));
        this.cursors.set(file, cursor);
        // A task that appeared since the page connected: its earlier lines are not news, but they are its first.
        const rows = known ? records : records.slice(-MAX_BATCH);
        for (const r of rows) {
          if (fresh.length < MAX_BATCH) fresh.push({ ...r, repoKey: record.repoKey });
          else dropped += 1;
        }
      }
      if (fresh.length > 0 || dropped > 0) this.broadcast('egress', { records: fresh, dropped });
      const pending = await listPending(this.ctx);
      const text = JSON.stringify(pending);
      if (text !== this.lastPending) {
        this.lastPending = text;
        this.broadcast('pending', pending);
      }
    } catch {
      // A task removed mid-read: the next tick sees the home as it is.
    } finally {
      this.ticking = false;
    }
  }
}
