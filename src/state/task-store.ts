import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MoatError } from '../errors.js';
import type { TaskRecord } from '../domain/task.js';
import { processAlive } from './process-alive.js';

/** What TaskStore leaves aside while it makes or removes a task folder; group 1 is the owner's pid. */
const ASIDE = /^\.(?:new|removed)-(\d+)-[0-9a-f]+$/;
/** A task's folder name (task-name.ts): never one of the folders set aside. */
const isTaskFolder = (name: string) => !name.startsWith('.');

/**
 * Task records on the host, one JSON file per task under `<home>/repos/<repoKey>/tasks/<name>/`.
 * The workspace the sandbox writes lives beside it; the record itself is never mounted.
 */
export class TaskStore {
  constructor(readonly home: string) {}

  /** Short hash of the home directory: labels resources so that each home collects only its own. */
  get homeKey(): string {
    return createHash('sha256').update(this.home).digest('hex').slice(0, 12);
  }

  /** Every repository's folder is in here; nothing else is. */
  get reposDir(): string {
    return join(this.home, 'repos');
  }

  private tasksDir(repoKey: string): string {
    return join(this.reposDir, repoKey, 'tasks');
  }

  taskDir(repoKey: string, name: string): string {
    return join(this.tasksDir(repoKey), name);
  }

  /** The task a folder of {@link taskDir}'s making belongs to; undefined for any other path. */
  taskOfDir(dir: string): { repoKey: string; name: string } | undefined {
    const match = /^([^/]+)\/tasks\/([^/]+)$/.exec(dir.startsWith(`${this.reposDir}/`) ? dir.slice(this.reposDir.length + 1) : '');
    return match ? { repoKey: match[1]!, name: match[2]! } : undefined;
  }

  /**
   * Every task folder of the home, read at once: for the gateway daemon, whose reload is
   * synchronous so that no listener changes while it runs.
   */
  taskDirsSync(): string[] {
    return this.tasksFoldersSync()
      .filter(({ name }) => isTaskFolder(name))
      .map(({ path }) => path);
  }

  /** Every folder in every repository's tasks folder (tasks, and ones set aside), by name and path. */
  private tasksFoldersSync(): Array<{ name: string; path: string }> {
    const list = (dir: string) => {
      try {
        return readdirSync(dir);
      } catch {
        return [];
      }
    };
    return list(this.reposDir).flatMap((repoKey) => {
      const dir = this.tasksDir(repoKey);
      return list(dir).map((name) => ({ name, path: join(dir, name) }));
    });
  }

  /** Inside the task's volume (a capped filesystem where the machine allows one). */
  workspacePath(repoKey: string, name: string): string {
    return join(this.taskDir(repoKey, name), 'volume', 'workspace');
  }

  /** The MCP server's log of refused and failed tool calls in this repository (mcp/audit.ts). */
  mcpAuditPath(repoKey: string): string {
    return join(this.reposDir, repoKey, 'mcp-audit.jsonl');
  }

  /** Markers of execs whose work may not be home yet (service/pending-sync.ts). */
  syncMarkerDir(repoKey: string, name: string): string {
    return join(this.taskDir(repoKey, name), 'sync-pending');
  }

  private recordPath(repoKey: string, name: string): string {
    return join(this.taskDir(repoKey, name), 'task.json');
  }

  async get(repoKey: string, name: string): Promise<TaskRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.recordPath(repoKey, name), 'utf8')) as TaskRecord;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new MoatError('E_INTERNAL', `task record of ${name} is unreadable: ${(error as Error).message}`, {
        hint: `inspect or remove ${this.recordPath(repoKey, name)}`,
        cause: error,
      });
    }
  }

  async require(repoKey: string, name: string): Promise<TaskRecord> {
    const record = await this.get(repoKey, name);
    if (!record || record.state === 'pooled')
      throw new MoatError('E_TASK_NOT_FOUND', `no task named ${JSON.stringify(name)} in this repository`, { hint: 'list tasks with `moat ls`' });
    return record;
  }

  /**
   * Reserves the task directory; fails if the task exists. The folder appears under its name with
   * its record already in it (made aside, then renamed: a rename onto a folder that has a record
   * fails, so two `up`s cannot both win). A process killed half-way leaves a folder `gc` sees
   * (a record naming its dead creator) or aside (collectLeftovers), never a nameless one.
   */
  async reserve(record: TaskRecord): Promise<void> {
    await mkdir(this.tasksDir(record.repoKey), { recursive: true, mode: 0o700 });
    const aside = this.asidePath(record.repoKey, 'new');
    await mkdir(aside, { mode: 0o700 });
    try {
      await writeFile(join(aside, 'task.json'), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
      await rename(aside, this.taskDir(record.repoKey, record.name));
    } catch (error) {
      await rm(aside, { recursive: true, force: true });
      if (['EEXIST', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) {
        throw new MoatError('E_TASK_EXISTS', `task ${record.name} already exists`, { hint: 'choose another --task name, or `moat rm` the old one' });
      }
      throw error;
    }
  }

  /** Atomic write: a crash leaves the old record or the new one, never half of one. */
  async save(record: TaskRecord): Promise<void> {
    const file = this.recordPath(record.repoKey, record.name);
    // Unique per write: two saves of one task in one process (concurrent execs of an MCP client) must not share it.
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, file);
  }

  /**
   * Removes a task's folder. It leaves its name in one step (a rename) before anything in it is
   * deleted: a recursive delete takes task.json among the first files, so a process killed during
   * it used to leave a folder without a record, which neither `ls`, `rm` nor `gc` could see, and
   * whose name no task could take again. What a killed removal leaves aside, `gc` collects.
   */
  async remove(repoKey: string, name: string): Promise<void> {
    const aside = this.asidePath(repoKey, 'removed');
    try {
      await rename(this.taskDir(repoKey, name), aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    await rm(aside, { recursive: true, force: true, maxRetries: 2 });
  }

  /**
   * Folders a killed `reserve` or `remove` left aside (their process is gone), deleted; the ones of
   * live processes are theirs to finish. Returns the paths deleted.
   */
  async collectLeftovers(): Promise<string[]> {
    const collected: string[] = [];
    for (const { name, path } of this.tasksFoldersSync()) {
      const owner = ASIDE.exec(name);
      if (!owner || processAlive(Number(owner[1]))) continue;
      await rm(path, { recursive: true, force: true, maxRetries: 2 });
      collected.push(path);
    }
    return collected;
  }

  /** A folder beside the tasks that no task name can match (names start with a letter or digit). */
  private asidePath(repoKey: string, why: 'new' | 'removed'): string {
    return join(this.tasksDir(repoKey), `.${why}-${process.pid}-${randomBytes(4).toString('hex')}`);
  }

  /**
   * The tasks of a repository; pooled ones (nobody's yet) and ones being removed after a `run`
   * that left no work (nobody's any more: lifecycle.ts removeAfterStatus) only when asked for.
   */
  async list(repoKey: string, options: { pooled?: boolean } = {}): Promise<TaskRecord[]> {
    const names = (await readdir(this.tasksDir(repoKey)).catch(() => [] as string[])).filter(isTaskFolder);
    const records = await Promise.all(names.map((name) => this.get(repoKey, name).catch(() => undefined)));
    return records
      .filter((r): r is TaskRecord => r !== undefined && (options.pooled === true || (r.state !== 'pooled' && r.state !== 'removing')))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async listAll(options: { pooled?: boolean } = {}): Promise<TaskRecord[]> {
    const repos = await readdir(this.reposDir).catch(() => [] as string[]);
    return (await Promise.all(repos.map((key) => this.list(key, options)))).flat();
  }

  /**
   * Changes when a task's folder is added to or removed from the home (the modification times of
   * the folders that hold them), in a few stats: a poller lists the tasks again only then. A
   * record rewritten in its own folder does not change it.
   */
  listingStamp(): string {
    const repos = this.reposDir;
    const mtime = (dir: string) => {
      try {
        return String(statSync(dir).mtimeMs);
      } catch {
        return '-';
      }
    };
    let keys: string[] = [];
    try {
      keys = readdirSync(repos);
    } catch {
      // no repository yet
    }
    return [mtime(repos), ...keys.map((key) => `${key}:${mtime(this.tasksDir(key))}`)].join(' ');
  }
}
