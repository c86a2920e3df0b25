import { mkdtempSync, rmSync } from 'node:fs';
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
});
