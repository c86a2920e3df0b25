import { describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimSpare, poolSize, QUIET_WAIT_MS, TaskPool } from '../../src/service/task-pool.js';

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

describe('a pool of several per shape (MOAT_POOL=N)', () => {
  const entry = (name: string, discarded: string[]) => ({ name, discard: async () => void discarded.push(name) });

  it('makes up to N of one shape, each taken once, and makes again only what was taken', async () => {
    const pool = new TaskPool(4, 3);
    const discarded: string[] = [];
    let made = 0;
    const make = async () => entry(`t${(made += 1)}`, discarded);
    pool.want('shape', make);
    pool.makeWanted();
    expect((await pool.take('shape'))?.name).toBe('t1');
    // Two stay ready; one more is asked for, not three.
    expect(pool.has('shape')).toBe(true);
    pool.want('shape', make);
    pool.makeWanted();
    expect((await pool.take('shape'))?.name).toBe('t2');
    expect((await pool.take('shape'))?.name).toBe('t3');
    expect((await pool.take('shape'))?.name).toBe('t4');
    expect(await pool.take('shape')).toBeUndefined();
    expect(made).toBe(4);
    await pool.close();
    expect(discarded).toEqual([]);
  });

  it('a request with none ready waits for the first of those being made', async () => {
    const pool = new TaskPool(4, 2);
    const discarded: string[] = [];
    const finishers: Array<() => void> = [];
    pool.want(
      'shape',
      () =>
        new Promise((resolve) => {
          const name = `m${finishers.length + 1}`;
          finishers.push(() => resolve(entry(name, discarded)));
        }),
    );
    pool.makeWanted();
    expect(finishers).toHaveLength(2);
    const taking = pool.take('shape');
    finishers[1]!();
    expect((await taking)?.name).toBe('m2');
    finishers[0]!();
    // The one not taken stays ready until the pool closes, then goes.
    expect((await pool.take('shape'))?.name).toBe('m1');
    await pool.close();
    expect(discarded).toEqual([]);
  });

  it('MOAT_POOL: off or 0 is none, unset is one, N is N, anything else is refused with a hint', () => {
    expect(poolSize(undefined)).toBe(1);
    expect(poolSize('off')).toBe(0);
    expect(poolSize('0')).toBe(0);
    expect(poolSize('3')).toBe(3);
    for (const bad of ['on', '-1', '9', '2.5', ' 2']) expect(() => poolSize(bad)).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
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

describe('a spare being made waits while a command is served', () => {
  const entry = (name: string) => ({ name, discard: async () => undefined });
  const settled = async (promise: Promise<unknown>) => {
    let done = false;
    void promise.then(() => (done = true));
    for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
    return done;
  };

  it('quiet() waits for every hold to be released, and at once with none', async () => {
    const pool = new TaskPool();
    expect(await settled(pool.quiet())).toBe(true);
    const first = pool.hold();
    const second = pool.hold();
    const waiting = pool.quiet();
    expect(await settled(waiting)).toBe(false);
    first();
    first(); // a second release does nothing: the other command still holds
    expect(await settled(waiting)).toBe(false);
    second();
    expect(await settled(waiting)).toBe(true);
  });

  it('a request waiting in take() for the spare being made lets that spare go on (no deadlock)', async () => {
    const pool = new TaskPool();
    const release = pool.hold();
    pool.want('shape', async () => {
      await pool.quiet();
      return entry('made');
    });
    pool.makeWanted();
    // The request that holds the server is the one waiting for the spare: it gets it.
    expect((await pool.take('shape'))?.name).toBe('made');
    release();
  });

  it('a command that holds long does not starve the pool: quiet() gives up after QUIET_WAIT_MS', async () => {
    vi.useFakeTimers();
    try {
      const pool = new TaskPool();
      pool.hold();
      let done = false;
      void pool.quiet().then(() => (done = true));
      await vi.advanceTimersByTimeAsync(QUIET_WAIT_MS - 1);
      expect(done).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      expect(done).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
});
