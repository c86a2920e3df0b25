import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TaskStore } from '../../src/state/task-store.js';
import type { TaskRecord } from '../../src/domain/task.js';

/** The one owner of moat's on-disk layout: what others read through it instead of rebuilding paths. */
describe('TaskStore layout', () => {
  const homes: string[] = [];
  afterEach(() => {
    for (const home of homes.splice(0)) rmSync(home, { recursive: true, force: true });
  });

  it('finds the task of a folder it made, and no task in any other path', () => {
    const store = new TaskStore('/h');
    expect(store.taskOfDir(store.taskDir('abc123', 'fix-1'))).toEqual({ repoKey: 'abc123', name: 'fix-1' });
    for (const other of [
      `${store.taskDir('abc123', 'fix-1')}/volume`,
      '/h/repos/abc123/tasks',
      '/h/repos/abc123/mcp-audit.jsonl',
      '/h/other/abc123/tasks/fix-1',
      '/elsewhere/repos/abc123/tasks/fix-1',
      '/h/reposx/abc123/tasks/fix-1',
    ]) {
      expect(store.taskOfDir(other), other).toBeUndefined();
    }
  });

  it('lists every task folder of every repository at once (the gateway daemon reads them so)', async () => {
    const home = mkdtempSync(join(tmpdir(), 'moat-store-'));
    homes.push(home);
    const store = new TaskStore(home);
    expect(store.taskDirsSync()).toEqual([]);
    const record = (repoKey: string, name: string) => ({ repoKey, name, createdAt: new Date().toISOString(), state: 'running' }) as TaskRecord;
    await store.reserve(record('r1', 'a'));
    await store.reserve(record('r1', 'b'));
    await store.reserve(record('r2', 'c'));
    expect(store.taskDirsSync().sort()).toEqual([store.taskDir('r1', 'a'), store.taskDir('r1', 'b'), store.taskDir('r2', 'c')].sort());
    expect(
      store
        .taskDirsSync()
        .map((dir) => store.taskOfDir(dir)?.name)
        .sort(),
    ).toEqual(['a', 'b', 'c']);
  });

  const record = (repoKey: string, name: string) => ({ repoKey, name, createdAt: new Date().toISOString(), state: 'running' }) as TaskRecord;

  /**
   * Watches `dir` between every turn of the event loop until `work` ends: true if it was ever seen
   * without its record. A recursive delete unlinks task.json among its first files, so a process
   * killed then (a warm server during a `run`'s removal) left a folder no `ls`, `rm` or `gc` saw.
   * The two looks are not one atomic read, so they go in the order in which the folder cannot
   * change back between them: while it is made, a folder seen stays; while it is removed, a
   * record seen gone stays gone.
   */
  async function seenWithoutRecord(dir: string, work: Promise<unknown>, while_: 'made' | 'removed'): Promise<boolean> {
    const record = join(dir, 'task.json');
    const without = () => (while_ === 'made' ? existsSync(dir) && !existsSync(record) : !existsSync(record) && existsSync(dir));
    let done = false;
    const ended = work.finally(() => (done = true));
    let seen = false;
    while (!done) {
      if (without()) seen = true;
      await new Promise((resolve) => setImmediate(resolve));
    }
    await ended;
    return seen;
  }

  it('a task folder is never without its record: it leaves its name whole, and arrives with the record in it', async () => {
    const home = mkdtempSync(join(tmpdir(), 'moat-store-'));
    homes.push(home);
    const store = new TaskStore(home);
    const dir = store.taskDir('r1', 'big');
    // Enough files that the delete takes many turns of the event loop, as a task's egress folder and workspace do.
    expect(await seenWithoutRecord(dir, store.reserve(record('r1', 'big')), 'made')).toBe(false);
    for (const sub of ['egress/bin', 'volume/workspace/src']) {
      mkdirSync(join(dir, sub), { recursive: true });
      for (let i = 0; i < 400; i += 1) writeFileSync(join(dir, sub, `f${i}`), 'x');
    }
    expect(await seenWithoutRecord(dir, store.remove('r1', 'big'), 'removed')).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(join(home, 'repos', 'r1', 'tasks'))).toEqual([]);
    // Removing what is gone is not an error (a rollback after a failed reserve, a second gc).
    await store.remove('r1', 'big');
  });

  it('two reserves of one name: one wins, the other is told the task exists and leaves nothing aside', async () => {
    const home = mkdtempSync(join(tmpdir(), 'moat-store-'));
    homes.push(home);
    const store = new TaskStore(home);
    const results = await Promise.allSettled([store.reserve(record('r1', 'same')), store.reserve(record('r1', 'same'))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'E_TASK_EXISTS' } });
    expect(readdirSync(join(home, 'repos', 'r1', 'tasks'))).toEqual(['same']);
    expect(await store.get('r1', 'same')).toMatchObject({ name: 'same' });
  });

  it('what a killed reserve or remove left aside is not a task, and is collected once its process is gone', async () => {
    const home = mkdtempSync(join(tmpdir(), 'moat-store-'));
    homes.push(home);
    const store = new TaskStore(home);
    await store.reserve(record('r1', 'kept'));
    const dead = spawnSync('true').pid!;
    const tasks = join(home, 'repos', 'r1', 'tasks');
    const leftovers = { dead: join(tasks, `.removed-${dead}-0a1b2c3d`), live: join(tasks, `.new-${process.pid}-0a1b2c3d`) };
    for (const aside of Object.values(leftovers)) {
      mkdirSync(join(aside, 'egress'), { recursive: true });
      writeFileSync(join(aside, 'task.json'), JSON.stringify(record('r1', 'gone')));
    }
    expect((await store.list('r1')).map((r) => r.name)).toEqual(['kept']);
    expect(store.taskDirsSync()).toEqual([store.taskDir('r1', 'kept')]);
    expect(await store.collectLeftovers()).toEqual([leftovers.dead]);
    expect(readdirSync(tasks).sort()).toEqual([`.new-${process.pid}-0a1b2c3d`, 'kept']);
  });
});
