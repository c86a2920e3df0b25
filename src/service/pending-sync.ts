import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskRecord } from '../domain/task.js';

/**
 * "Sync pending": an exec's work may be in the sandbox and not yet on `moat/<task>`. The warm
 * server sends a command's output and status first and brings its commits home right after; each
 * exec leaves a marker file on the host (its own, so no exec clears another's) from before its
 * command starts until its work is home. A marker outlives a killed moat (kill -9, a crash): the
 * next command on the task, and `sync`, `diff`, `merge`, `down`, `rm`, `ls`, read the workspace
 * first (the commits are in the task's repository, or in its workspace on the host if the
 * container died), so no commit is ever lost.
 *
 * A marker is `running` while its owner (with its pid and start time, so that one left by a dead
 * process is told apart) runs the command and then its sync, and `done` when that sync failed. A
 * marker that is `done`, or whose owner is gone, is due: any sync that reads the workspace afresh
 * brings that exec's work home and clears it.
 */
interface Marker {
  state: 'running' | 'done';
  pid: number;
  /** The owner's start time (/proc/<pid>/stat), so a reused pid does not pass for the owner. */
  started: string;
}

export interface PendingMarker {
  id: string;
  /** A sync that reads the workspace afresh from now on brings this exec's work home. */
  due: boolean;
}

type Store = { syncMarkerDir(repoKey: string, name: string): string };

function markerDir(store: Store, record: Pick<TaskRecord, 'repoKey' | 'name'>): string {
  return store.syncMarkerDir(record.repoKey, record.name);
}

async function startTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // Fields after the command name (which may hold spaces and parentheses); starttime is field 22.
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

let ownStart: Promise<string> | undefined;

/** Marks an exec of this process as under way (before its command starts). Returns the marker's id. */
export async function markRunning(store: Store, record: Pick<TaskRecord, 'repoKey' | 'name'>): Promise<string> {
  ownStart ??= startTime(process.pid).then((value) => value ?? '');
  const id = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const dir = markerDir(store, record);
  const marker: Marker = { state: 'running', pid: process.pid, started: await ownStart };
  await writeMarker(join(dir, id), marker).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeMarker(join(dir, id), marker);
  });
  return id;
}

/** The command has ended and its sync did not bring its work home: the next command on the task does. */
export async function markDone(store: Store, record: Pick<TaskRecord, 'repoKey' | 'name'>, id: string): Promise<void> {
  await writeMarker(join(markerDir(store, record), id), { state: 'done', pid: process.pid, started: (await ownStart) ?? '' });
}

async function writeMarker(file: string, marker: Marker): Promise<void> {
  // Written whole (a small write to a fresh file), so a reader sees the old marker or the new one.
  const part = `${file}.part`;
  await writeFile(part, JSON.stringify(marker), { mode: 0o600 });
  await rename(part, file);
}

/** The task's markers; `due` where the command ended or its owner is gone. */
export async function pendingMarkers(store: Store, record: Pick<TaskRecord, 'repoKey' | 'name'>): Promise<PendingMarker[]> {
  const dir = markerDir(store, record);
  const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => !name.endsWith('.part'));
  return Promise.all(
    names.map(async (id): Promise<PendingMarker> => {
      const text = await readFile(join(dir, id), 'utf8').catch(() => undefined);
      let marker: Partial<Marker> = {};
      try {
        marker = JSON.parse(text ?? '{}') as Partial<Marker>;
      } catch {
        // A torn or foreign file: treat it as work to bring home, which is always safe.
      }
      if (marker.state !== 'running' || typeof marker.pid !== 'number') return { id, due: true };
      const alive = (await startTime(marker.pid)) === marker.started;
      return { id, due: !alive };
    }),
  );
}

/** Clears markers whose work a completed sync brought home. */
export async function clearMarkers(store: Store, record: Pick<TaskRecord, 'repoKey' | 'name'>, ids: string[]): Promise<void> {
  const dir = markerDir(store, record);
  await Promise.all(ids.map((id) => rm(join(dir, id), { force: true })));
}

/**
 * The warm server's syncs under way, one chain per task: a later command on the task waits for
 * them, and the server waits for all of them before it exits.
 */
export class PendingSyncs {
  private readonly chains = new Map<string, Promise<void>>();

  /** Runs `job` once `start` resolves, after the task's earlier jobs; failures stay with the task's marker. */
  add(key: string, start: Promise<void>, job: () => Promise<void>): void {
    const previous = this.chains.get(key) ?? Promise.resolve();
    const chain: Promise<void> = Promise.all([previous, start])
      .then(job)
      .catch(() => undefined)
      .finally(() => {
        if (this.chains.get(key) === chain) this.chains.delete(key);
      });
    this.chains.set(key, chain);
  }

  /** Resolves when the task's syncs under way have ended. */
  async wait(key: string): Promise<void> {
    for (let chain = this.chains.get(key); chain; chain = this.chains.get(key)) await chain;
  }

  async waitAll(): Promise<void> {
    while (this.chains.size > 0) await Promise.all(this.chains.values());
  }
}

export function taskKey(record: Pick<TaskRecord, 'repoKey' | 'name'>): string {
  return `${record.repoKey}/${record.name}`;
}

/**
 * Test hook: with MOAT_TEST_KILL_AT=<point>, the process kills itself (SIGKILL, as kill -9 would)
 * at that point of an exec or a sync, so tests can check that no commit is lost whatever moment
 * moat dies at. Points: exec-after-command, exec-after-status, sync-after-read, sync-after-fetch.
 */
export function killPoint(env: NodeJS.ProcessEnv, point: string): void {
  if (env.MOAT_TEST_KILL_AT === point) process.kill(process.pid, 'SIGKILL');
}
