import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessCaches } from '../../src/service/process-caches.js';
import type { ContainerEngine } from '../../src/engine/engine.js';

/** A stand-in engine: only ping is asked of it here; `alive` says whether it answers. */
function fakeEngine(name: string, state: { alive: boolean; pings: number }, sourceFiles?: string[]): ContainerEngine {
  return {
    endpoint: name,
    sourceFiles,
    ping: async () => {
      state.pings += 1;
      if (!state.alive) throw new Error(`${name} is down`);
    },
  } as unknown as ContainerEngine;
}

describe("the warm server's caches", () => {
  const withConfig = (run: (file: string) => Promise<void>) => async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moat-caches-'));
    try {
      await run(join(dir, 'config.yaml'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it(
    'keeps the engine for the same environment and config, pinged on every command',
    withConfig(async (file) => {
      const caches = new ProcessCaches();
      const state = { alive: true, pings: 0 };
      let opened = 0;
      const open = async () => fakeEngine(`e${(opened += 1)}`, state);
      const first = await caches.engine({ A: '1' }, file, open);
      const second = await caches.engine({ A: '1' }, file, open);
      expect(second).toBe(first);
      expect(opened).toBe(1);
      expect(state.pings).toBe(2);
    }),
  );

  it(
    'never shares an engine across another environment or an edited user config',
    withConfig(async (file) => {
      const caches = new ProcessCaches();
      const state = { alive: true, pings: 0 };
      let opened = 0;
      const open = async () => fakeEngine(`e${(opened += 1)}`, state);
      const docker = await caches.engine({ A: '1' }, file, open);
      // `--engine podman` for one command is another environment.
      const other = await caches.engine({ A: '1', MOAT_ENGINE: 'podman' }, file, open);
      expect(other).not.toBe(docker);
      writeFileSync(file, 'engine: podman\n');
      const edited = await caches.engine({ A: '1' }, file, open);
      expect(edited).not.toBe(docker);
      expect(opened).toBe(3);
    }),
  );

  it(
    'opens the engine again when a file it was opened from changed (a kubeconfig switched to another context)',
    withConfig(async (file) => {
      const kubeconfig = `${file}.kubeconfig`;
      writeFileSync(kubeconfig, 'current-context: one\n');
      const caches = new ProcessCaches();
      const state = { alive: true, pings: 0 };
      let opened = 0;
      const open = async () => fakeEngine(`e${(opened += 1)}`, state, [kubeconfig]);
      const first = await caches.engine({ A: '1' }, file, open);
      expect(await caches.engine({ A: '1' }, file, open)).toBe(first);
      writeFileSync(kubeconfig, 'current-context: two\n');
      const switched = await caches.engine({ A: '1' }, file, open);
      expect(switched).not.toBe(first);
      expect(await caches.engine({ A: '1' }, file, open)).toBe(switched);
      expect(opened).toBe(2);
    }),
  );

  it(
    'keeps no engine whose config or kubeconfig cannot be read (its content unknown), and opens it each time',
    withConfig(async (file) => {
      // A directory where a file is expected: readable by no one, root included.
      const kubeconfig = `${file}.kubeconfig.d`;
      mkdirSync(kubeconfig);
      const caches = new ProcessCaches();
      const state = { alive: true, pings: 0 };
      let opened = 0;
      const open = async () => fakeEngine(`e${(opened += 1)}`, state, [kubeconfig]);
      const first = await caches.engine({}, file, open);
      expect(await caches.engine({}, file, open)).not.toBe(first);
      expect(opened).toBe(2);
      const unreadableConfig = `${file}.d`;
      mkdirSync(unreadableConfig);
      const plain = async () => fakeEngine(`p${(opened += 1)}`, state);
      const one = await caches.engine({}, unreadableConfig, plain);
      expect(await caches.engine({}, unreadableConfig, plain)).not.toBe(one);
      expect(opened).toBe(4);
      expect(state.pings).toBe(4);
    }),
  );

  it(
    'drops a kept engine that no longer answers and opens it afresh; a failed open is not kept',
    withConfig(async (file) => {
      const caches = new ProcessCaches();
      const states = [
        { alive: true, pings: 0 },
        { alive: false, pings: 0 },
        { alive: true, pings: 0 },
      ];
      let opened = 0;
      const open = async () => {
        opened += 1;
        return fakeEngine(`e${opened}`, states[opened - 1]!);
      };
      const first = await caches.engine({}, file, open);
      states[0]!.alive = false;
      // The kept one is dead: a new one is opened, and it is dead too: the command hears why.
      await expect(caches.engine({}, file, open)).rejects.toThrow('e2 is down');
      // Nothing dead was kept: the next command opens again and gets a live one.
      const third = await caches.engine({}, file, open);
      expect(third).not.toBe(first);
      expect(third.endpoint).toBe('e3');
      expect(opened).toBe(3);
    }),
  );

  it(
    "reads the git identity again when the repository's config changes, and every time where it includes another file",
    withConfig(async (file) => {
      const gitDir = join(file, '..');
      const caches = new ProcessCaches();
      let reads = 0;
      const read = async () => ({ name: `read ${(reads += 1)}` });
      writeFileSync(join(gitDir, 'config'), '[user]\n\tname = a\n');
      expect(await caches.identity(gitDir, read)).toEqual({ name: 'read 1' });
      expect(await caches.identity(gitDir, read)).toEqual({ name: 'read 1' });
      writeFileSync(join(gitDir, 'config'), '[user]\n\tname = b\n');
      expect(await caches.identity(gitDir, read)).toEqual({ name: 'read 2' });
      writeFileSync(join(gitDir, 'config'), '[include]\n\tpath = elsewhere\n');
      expect(await caches.identity(gitDir, read)).toEqual({ name: 'read 3' });
      expect(await caches.identity(gitDir, read)).toEqual({ name: 'read 4' });
    }),
  );

  it('reads what a commit holds once per repository and commit, and a failure not at all', async () => {
    const caches = new ProcessCaches();
    let reads = 0;
    const read = async () => [`read ${(reads += 1)}`];
    expect(await caches.commitAnswer('/g', 'c1', 'files', read)).toEqual(['read 1']);
    expect(await caches.commitAnswer('/g', 'c1', 'files', read)).toEqual(['read 1']);
    expect(await caches.commitAnswer('/g', 'c2', 'files', read)).toEqual(['read 2']);
    expect(await caches.commitAnswer('/other', 'c1', 'files', read)).toEqual(['read 3']);
    await expect(caches.commitAnswer('/g', 'c3', 'files', () => Promise.reject(new Error('git failed')))).rejects.toThrow('git failed');
    expect(await caches.commitAnswer('/g', 'c3', 'files', read)).toEqual(['read 4']);
  });
});
