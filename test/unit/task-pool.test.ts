import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimSpare, TaskPool } from '../../src/service/task-pool.js';

describe('tasks made ahead', () => {
  const entry = (name: string, discarded: string[]) => ({ name, discard: async () => void discarded.push(name) });

  it('a request takes the task still being made for its shape, rather than making one from scratch', async () => {
    const pool = new TaskPool();
    const discarded: string[] = [];
    let finish: () => void = () => undefined;
    pool.want('shape', () => new Promise((resolve) => (finish = () => resolve(entry('ahead', discarded)))));
    pool.makeWanted();
    const taking = pool.take('shape');
    expect(await pool.take('other shape')).toBeUndefined();
    finish();
    expect((await taking)?.name).toBe('ahead');
    // Taken once only.
    expect(await pool.take('shape')).toBeUndefined();
    await pool.close();
    expect(discarded).toEqual([]);
  });

  it('closing waits for the ones being made and discards every one not taken', async () => {
    const pool = new TaskPool();
    const discarded: string[] = [];
    pool.want('a', async () => entry('a1', discarded));
    pool.want('b', () => new Promise((resolve) => setTimeout(() => resolve(entry('b1', discarded)), 20)));
    pool.makeWanted();
    await pool.close();
    expect(discarded.sort()).toEqual(['a1', 'b1']);
    expect(await pool.take('a')).toBeUndefined();
  });
});

describe('a spare task is claimed once', () => {
  it('by the request that takes it or by gc --all, never both', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moat-spare-'));
    try {
      const claims = await Promise.all([claimSpare(dir), claimSpare(dir), claimSpare(dir)]);
      expect(claims.filter(Boolean)).toHaveLength(1);
      expect(await claimSpare(dir)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
