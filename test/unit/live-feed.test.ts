import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendAudit, type AuditRecord } from '../../src/gateway/audit.js';
import { MoatContext } from '../../src/service/context.js';
import { auditFile } from '../../src/service/egress.js';
import { fairShares, LiveFeed, MAX_BATCH, TICK_MS } from '../../src/ui/live.js';

/** What the feed writes to a page, as events. */
class FakePage extends EventEmitter {
  text = '';
  writableLength = 0;
  writeHead(): this {
    return this;
  }
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
  end(): void {
    this.emit('close');
  }
  destroy(): void {
    this.emit('close');
  }
  egress(): Array<{ records: Array<AuditRecord & { repoKey: string }>; dropped: number }> {
    return this.text
      .split('\n\n')
      .filter((e) => e.startsWith('event: egress'))
      .map((e) => JSON.parse(e.slice(e.indexOf('data: ') + 6)) as { records: Array<AuditRecord & { repoKey: string }>; dropped: number });
  }
}

const attempt = (task: string, host: string, i = 0): AuditRecord => ({
  time: new Date(1_700_000_000_000 + i).toISOString(),
  task,
  method: 'GET',
  host,
  port: 80,
  decision: 'allowed',
  rule: 'r',
  bytesUp: 0,
  bytesDown: 0,
  durationMs: 0,
});

describe('the live feed', () => {
  let home: string;
  let ctx: MoatContext;
  const addTask = (name: string) => {
    const dir = join(home, 'repos', 'repo', 'tasks', name);
    mkdirSync(join(dir, 'egress'), { recursive: true });
    writeFileSync(join(dir, 'task.json'), JSON.stringify({ name, repoKey: 'repo', state: 'running', createdAt: new Date().toISOString() }));
    return auditFile(ctx, { repoKey: 'repo', name });
  };
  const nextTick = () => new Promise((r) => setTimeout(r, TICK_MS + 150));
  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'moat-live-'));
    ctx = new MoatContext({ env: { MOAT_HOME: home, MOAT_CONFIG: join(home, 'config.yaml') }, cwd: home });
  });
  afterEach(() => rmSync(home, { recursive: true, force: true }));

  it('shares a flooded batch fairly: a quiet task keeps its rows, the rest is counted as not shown', () => {
    expect(fairShares([2_000, 3], 500)).toEqual([497, 3]);
    expect(fairShares([10, 20], 500)).toEqual([10, 20]);
    expect(fairShares([400, 400, 1], 500)).toEqual([249, 250, 1]);
    expect(fairShares([], 500)).toEqual([]);
  });

  it('opens on the latest attempts of a long log, then sends only new ones; a flood costs rows, not the quiet task its row', async () => {
    const flood = addTask('flood');
    const quiet = addTask('quiet');
    for (let i = 0; i < 5_000; i += 1) appendAudit(flood, attempt('flood', `old-${i}.example`, i));
    const feed = new LiveFeed(ctx);
    const page = new FakePage();
    await feed.add(page as unknown as ServerResponse);
    try {
      const [opening] = page.egress();
      expect(opening!.records).toHaveLength(200);
      expect(opening!.records.at(-1)).toMatchObject({ host: 'old-4999.example', repoKey: 'repo' });

      for (let i = 0; i < MAX_BATCH * 3; i += 1) appendAudit(flood, attempt('flood', `new-${i}.example`, 10_000 + i));
      appendAudit(quiet, attempt('quiet', 'quiet.example', 10_000));
      await nextTick();
      const batches = page.egress().slice(1);
      const records = batches.flatMap((b) => b.records);
      const dropped = batches.reduce((n, b) => n + b.dropped, 0);
      // Every new attempt is either shown or counted, none twice, nothing from before the opening.
      expect(records.length + dropped).toBe(MAX_BATCH * 3 + 1);
      expect(new Set(records.map((r) => r.host)).size).toBe(records.length);
      expect(records.some((r) => r.host.startsWith('old-'))).toBe(false);
      expect(records.map((r) => r.host)).toContain('quiet.example');
      expect(dropped).toBeGreaterThan(0);
      // The newest of the flood are the ones shown.
      expect(records.map((r) => r.host)).toContain(`new-${MAX_BATCH * 3 - 1}.example`);

      // A task created while the page is open is seen, from its first attempt.
      const late = addTask('late');
      appendAudit(late, attempt('late', 'late.example', 20_000));
      await nextTick();
      expect(
        page
          .egress()
          .flatMap((b) => b.records)
          .map((r) => r.host),
      ).toContain('late.example');
    } finally {
      feed.stop();
    }
  });

  it('sends a page that reads slowly how many rows it missed, not the rows, until it catches up; the others get every row', async () => {
    const flood = addTask('flood');
    const feed = new LiveFeed(ctx);
    const slow = new FakePage();
    const quick = new FakePage();
    await feed.add(slow as unknown as ServerResponse);
    await feed.add(quick as unknown as ServerResponse);
    try {
      slow.writableLength = 1024 ** 2;
      for (let i = 0; i < 30; i += 1) appendAudit(flood, attempt('flood', `a-${i}.example`, i));
      await nextTick();
      expect(slow.egress().slice(1)).toEqual([]);
      expect(
        quick
          .egress()
          .slice(1)
          .flatMap((b) => b.records),
      ).toHaveLength(30);
      slow.writableLength = 0;
      appendAudit(flood, attempt('flood', 'b.example', 100));
      await nextTick();
      const caughtUp = slow.egress().slice(1);
      expect(caughtUp.flatMap((b) => b.records.map((r) => r.host))).toEqual(['b.example']);
      expect(caughtUp.reduce((n, b) => n + b.dropped, 0)).toBe(30);
      expect(
        quick
          .egress()
          .slice(1)
          .reduce((n, b) => n + b.dropped, 0),
      ).toBe(0);
    } finally {
      feed.stop();
    }
  });
});
