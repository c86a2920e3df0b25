import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

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

/** Spare tasks one server keeps at most (one per request shape). */
export const MAX_SPARES_PER_SERVER = 4;

interface Pooled {
  name: string;
  discard: () => Promise<void>;
}

/**
 * Tasks made ahead of time by the warm CLI server: the container of the next `moat run` (or
 * `moat up` without a name) is started while the user reads the last one's output. One per
 * request shape; made only when the server has nothing else to do, and all removed when it stops.
 * A pooled task is an ordinary task record in state `pooled` whose creator is the server, so a
 * `gc` after the server's death collects it like any half-made task.
 */
export class TaskPool {
  private readonly ready = new Map<string, Pooled>();
  private readonly wanted = new Map<string, () => Promise<Pooled | undefined>>();
  private readonly making = new Set<Promise<unknown>>();
  private readonly makingFor = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(private readonly maxEntries = MAX_SPARES_PER_SERVER) {}

  /**
   * A ready task made for exactly this key, now the caller's to finish; undefined if none. One
   * being made for the key is waited for: it is further along than one made from scratch.
   */
  async take(key: string): Promise<Pooled | undefined> {
    if (!this.ready.has(key)) await this.makingFor.get(key);
    const entry = this.ready.get(key);
    this.ready.delete(key);
    return entry;
  }

  /** Asks for a task of this shape to be made at the next quiet moment (see makeWanted). */
  want(key: string, make: () => Promise<Pooled | undefined>): void {
    if (this.closed || this.ready.has(key)) return;
    if (!this.wanted.has(key) && this.ready.size + this.wanted.size >= this.maxEntries) return;
    this.wanted.set(key, make);
  }

  /** Makes what was asked for; the server calls this when no command is running. */
  makeWanted(): void {
    for (const [key, make] of this.wanted) {
      this.wanted.delete(key);
      const job = make()
        .then(async (entry) => {
          if (!entry) return;
          // Stopped meanwhile, or made twice: not kept.
          if (this.closed || this.ready.has(key)) await entry.discard();
          else this.ready.set(key, entry);
        })
        .catch(() => undefined)
        .finally(() => {
          this.making.delete(job);
          if (this.makingFor.get(key) === job) this.makingFor.delete(key);
        });
      this.making.add(job);
      this.makingFor.set(key, job);
    }
  }

  /** Removes every pooled task, after the ones being made are done. */
  async close(): Promise<void> {
    this.closed = true;
    this.wanted.clear();
    await Promise.all([...this.making]);
    const entries = [...this.ready.values()];
    this.ready.clear();
    await Promise.all(entries.map((entry) => entry.discard().catch(() => undefined)));
  }
}
