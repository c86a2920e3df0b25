import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ContainerEngine } from '../engine/engine.js';

/** Entries each cache keeps at most: one process serves a few environments and repositories. */
const MAX_ENGINES = 8;
const MAX_COMMITS = 256;

/**
 * Answers a long-lived process (the warm server) keeps from one command to the next, so that a
 * request a spare can serve costs only what it must. Each answer is keyed by everything it was
 * computed from (never shared across another environment, home, config or endpoint), and each is
 * one that cannot change under the key, or whose being wrong is noticed and undone:
 *
 * - the engine, by the command's environment and the user's config file as it reads now (and
 *   opened again when a file it was opened from, a kubeconfig, changed since): the
 *   client and what it found out once (Podman's rootlessness, the disk cap's probe, which on a
 *   docker-group user's engine is Docker's `/info`) serve every command of that key. It is pinged
 *   on every command as before; a cached engine that does not answer is dropped and the engine
 *   opened afresh (Podman's service, say, stopped after its idle time and started again by that open);
 * - what a commit's tree holds (its top-level names, for choosing the template): a commit id names
 *   its content, so the answer for a given repository and commit never changes;
 * - the user's git identity (user.name, user.email), keyed by the bytes of every config file git
 *   reads for it (system, global, the repository's): an edit is a new key. Where one of them
 *   includes other files or the repository has per-worktree config, git is asked every time.
 */
export class ProcessCaches {
  private readonly engines = new Map<string, Promise<ContainerEngine>>();
  /** Each kept engine's source files (a kubeconfig) as they were when it was opened: an edit opens it again. */
  private readonly sources = new WeakMap<ContainerEngine, string>();
  private readonly trees = new Map<string, Promise<string[]>>();
  private readonly identities = new Map<string, Promise<{ name?: string; email?: string }>>();

  /** The engine for this environment and user config, answering `ping` now; `open` makes one when none is kept. */
  async engine(env: NodeJS.ProcessEnv, userConfigFile: string, open: () => Promise<ContainerEngine>): Promise<ContainerEngine> {
    const key = await engineKey(env, userConfigFile);
    // A user config that exists but cannot be read: nothing is kept, and opening says why.
    if (key === undefined) {
      const engine = await open();
      await engine.ping();
      return engine;
    }
    const kept = this.engines.get(key);
    if (kept) {
      const engine = await kept.catch(() => undefined);
      const sources = engine && (await sourcesKey(engine));
      if (
        engine &&
        sources !== undefined &&
        sources === this.sources.get(engine) &&
        (await engine.ping().then(
          () => true,
          () => false,
        ))
      )
        return engine;
      if (this.engines.get(key) === kept) this.engines.delete(key);
    }
    const opened = open();
    remember(this.engines, key, opened, MAX_ENGINES);
    try {
      const engine = await opened;
      const sources = await sourcesKey(engine);
      if (sources !== undefined) this.sources.set(engine, sources);
      await engine.ping();
      return engine;
    } catch (error) {
      // Nothing that failed is kept: the next command tries again, and says why if it fails too.
      if (this.engines.get(key) === opened) this.engines.delete(key);
      throw error;
    }
  }

  /** `read(commit)`'s answer for this repository's commit, read once per process. */
  async commitAnswer(gitDir: string, commit: string, what: string, read: () => Promise<string[]>): Promise<string[]> {
    return readOnce(this.trees, `${gitDir}\0${commit}\0${what}`, MAX_COMMITS, read);
  }

  /** The repository's git identity (`read`: git's answer), read again whenever a config file it comes from changed. */
  async identity(gitDir: string, read: () => Promise<{ name?: string; email?: string }>): Promise<{ name?: string; email?: string }> {
    const key = await identityKey(gitDir);
    return key === undefined ? read() : readOnce(this.identities, key, MAX_ENGINES, read);
  }
}

/** The answer kept under `key`, else `read`'s, kept unless it fails (the next caller reads again). */
function readOnce<T>(map: Map<string, Promise<T>>, key: string, max: number, read: () => Promise<T>): Promise<T> {
  const kept = map.get(key);
  if (kept) return kept;
  const answer = read();
  remember(map, key, answer, max);
  answer.catch(() => map.get(key) === answer && map.delete(key));
  return answer;
}

/**
 * The config files git reads user.name and user.email from (moat's git runs with this process's
 * HOME and XDG_CONFIG_HOME, and without GIT_CONFIG*: workspace/git.ts), as one key of their
 * bytes; undefined where that is not the whole story (an include, per-worktree config).
 */
async function identityKey(gitDir: string): Promise<string | undefined> {
  const home = process.env.HOME ?? homedir();
  const xdg = process.env.XDG_CONFIG_HOME || join(home, '.config');
  const files = ['/etc/gitconfig', join(xdg, 'git', 'config'), join(home, '.gitconfig'), join(gitDir, 'config')];
  return filesKey(files, (bytes) => !/include|worktreeconfig/i.test(bytes.toString('latin1')));
}

/**
 * The bytes of `files` as one key, or undefined when they cannot stand for what is read from them:
 * a file that exists but cannot be read (its content unknown), or one `complete` says depends on
 * more than its own bytes. A missing file is empty: its appearing later changes the key.
 */
async function filesKey(files: readonly string[], complete: (bytes: Buffer) => boolean = () => true): Promise<string | undefined> {
  const hash = createHash('sha256');
  for (const file of files) {
    const bytes = await readFile(file).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? Buffer.alloc(0) : undefined));
    if (bytes === undefined || !complete(bytes)) return undefined;
    hash.update(file).update('\0').update(String(bytes.length)).update('\0').update(bytes);
  }
  return hash.digest('hex');
}

/** The newest entries kept, the oldest dropped past `max`. */
function remember<T>(map: Map<string, T>, key: string, value: T, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value!);
}

/**
 * Which engine a command gets depends on its environment (MOAT_ENGINE, `--engine`, the sockets,
 * KUBECONFIG…) and the user's config (`engine`, `kubernetes`): all of both is the key, the config
 * as its bytes read now (a missing file is empty), so any edit opens the engine again.
 */
async function engineKey(env: NodeJS.ProcessEnv, userConfigFile: string): Promise<string | undefined> {
  const config = await filesKey([userConfigFile]);
  if (config === undefined) return undefined;
  const vars = Object.entries(env)
    .filter(([, value]) => value !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256').update(JSON.stringify(vars)).update('\0').update(config).digest('hex');
}

/** The files an engine was opened from (ContainerEngine.sourceFiles, a kubeconfig), as one key: see filesKey. */
function sourcesKey(engine: ContainerEngine): Promise<string | undefined> {
  return filesKey(engine.sourceFiles ?? []);
}
