import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MoatError } from '../errors.js';

/** The user-repository ref a pooled task's workspace is fetched from, while it is being made. */
export function poolRef(name: string): string {
  return `refs/moat/pool/${name}`;
}

/** Everything a task's sandbox is made from, as one key: a pooled task serves only an identical request. */
export function poolKey(parts: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

/**
 * Makes a spare task one party's, once: the request that takes it (up.ts) or `gc --all` that
 * removes it. An exclusive create of a file in the task's directory decides; the loser leaves the
 * task alone, so gc never removes a task (and its new branch) a request has just made its own.
 * The file stays: the task is no longer spare after either, and goes with its directory.
 */
export async function claimSpare(taskDir: string): Promise<boolean> {
  try {
    await writeFile(join(taskDir, 'spare-claimed'), `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/** Request shapes one server keeps spares for at most. */
export const MAX_SPARES_PER_SERVER = 4;
/** Spares one server keeps per request shape at most (MOAT_POOL=N). */
export const MAX_SPARES_PER_SHAPE = 8;

/**
 * How many spares per request shape the warm server keeps, from MOAT_POOL: `off` (or 0) none,
 * a number up to {@link MAX_SPARES_PER_SHAPE} that many, unset one. One is enough for a person
 * between two commands; commands that come faster than a sandbox is made (a pod takes seconds)
 * each find one ready only with as many made ahead as come while one is made.
 */
export function poolSize(value: string | undefined): number {
  if (value === undefined || value === '') return 1;
  if (value === 'off') return 0;
  if (/^[0-9]+$/.test(value) && Number(value) <= MAX_SPARES_PER_SHAPE) return Number(value);
  throw new MoatError('E_CONFIG_INVALID', `MOAT_POOL=${value.slice(0, 40)} is neither off nor a number of spares from 0 to ${MAX_SPARES_PER_SHAPE}`, {
    hint: 'set MOAT_POOL=off (nothing made ahead), or MOAT_POOL=N for N tasks made ahead per request shape (default 1)',
  });
}

interface Pooled {
  name: string;
  discard: () => Promise<void>;
  /** Makes the spare's branch through a git process started with it (prepared-ref.ts); false: ask git. */
  createBranch?: () => Promise<boolean>;
}

/**
 * How long a spare's host-side step waits at most for the commands being served: a command that
 * prints nothing for minutes must not leave the pool empty (and the next claim waiting for a pod).
 */
export const QUIET_WAIT_MS = 2000;

/**
 * Tasks made ahead of time by the warm CLI server: the container of the next `moat run` (or
 * `moat up` without a name) is started while the user reads the last one's output. Up to
 * `perShape` per request shape (MOAT_POOL=N); made only when the server has nothing else to do,
 * and all removed when it stops.
 * A pooled task is an ordinary task record in state `pooled` whose creator is the server, so a
 * `gc` after the server's death collects it like any half-made task.
 */
export class TaskPool {
  private readonly ready = new Map<string, Pooled[]>();
  private readonly wanted = new Map<string, { make: () => Promise<Pooled | undefined>; count: number }>();
  private readonly making = new Set<Promise<unknown>>();
  private readonly makingFor = new Map<string, Set<Promise<unknown>>>();
  private closed = false;
  /** Commands being served whose first output is not out yet (hold()). */
  private holds = 0;
  /** Requests waiting in take() for a spare still being made: its steps must not wait for them. */
  private takers = 0;
  private readonly quietWaiters = new Set<() => void>();

  constructor(
    private readonly maxEntries = MAX_SPARES_PER_SERVER,
    private readonly perShape = 1,
  ) {}

  /**
   * A ready task made for exactly this key, now the caller's to finish; undefined if none. One
   * being made for the key is waited for: it is further along than one made from scratch.
   */
  async take(key: string): Promise<Pooled | undefined> {
    if (!this.ready.get(key)?.length && (this.makingFor.get(key)?.size ?? 0) > 0) {
      // This request waits for a spare being made: that spare's steps go on now (quiet()).
      this.takers += 1;
      this.openQuiet();
      try {
        while (!this.ready.get(key)?.length && (this.makingFor.get(key)?.size ?? 0) > 0) await Promise.race(this.makingFor.get(key)!);
      } finally {
        this.takers -= 1;
      }
    }
    const entries = this.ready.get(key);
    const entry = entries?.shift();
    if (entries?.length === 0) this.ready.delete(key);
    return entry;
  }

  /**
   * A command is being served (the warm server, from its request until the command's first output
   * or its end): a spare being made meanwhile takes its next host-side step (a git child, an exec,
   * a seed's bundle) only after, so that the claim has the server's event loop and the machine's
   * cores to itself (docs/benchmarks.md: each git child the server forks stalls its loop 20-90 ms
   * under load, and the spare made beside a claim made the slow claims). Returns the release; a
   * second call does nothing.
   */
  hold(): () => void {
    this.holds += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds -= 1;
      if (this.holds === 0) this.openQuiet();
    };
  }

  /**
   * Resolves when no command holds the server (hold()), at once when a request waits in take()
   * for a spare being made (it waits for these very steps), and after {@link QUIET_WAIT_MS} at most.
   */
  quiet(): Promise<void> {
    if (this.holds === 0 || this.takers > 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.quietWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, QUIET_WAIT_MS);
      this.quietWaiters.add(done);
    });
  }

  private openQuiet(): void {
    for (const done of [...this.quietWaiters]) done();
  }

  /** How many tasks are ready to take now, of every shape (not those still being made). */
  readyCount(): number {
    return [...this.ready.values()].reduce((sum, entries) => sum + entries.length, 0);
  }

  /** Whether a task of this shape is ready to take now (not one still being made). */
  has(key: string): boolean {
    return (this.ready.get(key)?.length ?? 0) > 0;
  }

  /** Asks for tasks of this shape to be made at the next quiet moment, up to the pool's size (see makeWanted). */
  want(key: string, make: () => Promise<Pooled | undefined>): void {
    if (this.closed) return;
    const count = this.perShape - (this.ready.get(key)?.length ?? 0) - (this.makingFor.get(key)?.size ?? 0);
    if (count <= 0) return;
    const shapes = new Set([...this.ready.keys(), ...this.wanted.keys(), ...this.makingFor.keys()]);
    if (!shapes.has(key) && shapes.size >= this.maxEntries) return;
    this.wanted.set(key, { make, count });
  }

  /** Makes what was asked for; the server calls this when no command is running. */
  makeWanted(): void {
    for (const [key, { make, count }] of this.wanted) {
      this.wanted.delete(key);
      for (let i = 0; i < count; i += 1) this.makeOne(key, make);
    }
  }

  private makeOne(key: string, make: () => Promise<Pooled | undefined>): void {
    const job: Promise<unknown> = make()
      .then(async (entry) => {
        if (!entry) return;
        const entries = this.ready.get(key) ?? [];
        // Stopped meanwhile, or made more than the pool holds: not kept.
        if (this.closed || entries.length >= this.perShape) await entry.discard();
        else this.ready.set(key, [...entries, entry]);
      })
      .catch(() => undefined)
      .finally(() => {
        this.making.delete(job);
        const jobs = this.makingFor.get(key);
        jobs?.delete(job);
        if (jobs?.size === 0) this.makingFor.delete(key);
      });
    this.making.add(job);
    this.makingFor.set(key, (this.makingFor.get(key) ?? new Set()).add(job));
  }

  /** Removes every pooled task, after the ones being made are done. */
  async close(): Promise<void> {
    this.closed = true;
    this.openQuiet();
    this.wanted.clear();
    await Promise.all([...this.making]);
    const entries = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.all(entries.map((entry) => entry.discard().catch(() => undefined)));
  }
}
