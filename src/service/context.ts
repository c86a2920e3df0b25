import { join } from 'node:path';
import { resolvePaths, type MoatPaths } from '../config/paths.js';
import { loadConfigFile } from '../config/load.js';
import { effectiveConfig, type EffectiveConfig } from '../config/effective.js';
import type { MoatConfig } from '../config/schema.js';
import type { TaskPool } from './task-pool.js';
import type { PendingSyncs } from './pending-sync.js';
import type { ProcessCaches } from './process-caches.js';
import type { ContainerEngine } from '../engine/engine.js';
import { parseIsolation } from '../domain/isolation.js';
import { TaskStore } from '../state/task-store.js';
import { UserRepository, type RepositoryCache } from '../workspace/user-repo.js';

/** Ambient things every operation needs, passed in (with real defaults) so tests need no globals. */
export interface MoatOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  paths?: MoatPaths;
  /** Supplies the engine; defaults to the one openEngine (engine/open-engine.ts) chooses. */
  engine?: () => Promise<ContainerEngine>;
  /** Progress lines (image builds, sync notes). Results never go here. */
  progress?: (line: string) => void;
  /** Host uid/gid, injectable for tests. */
  hostUser?: { uid: number; gid: number };
  /** Where the secret values this context reads are collected, for redacting the caller's output. */
  secretValues?: Set<string>;
  /** Tasks made ahead of time (the warm CLI server's); without one, every task is made on request. */
  pool?: TaskPool;
  /**
   * The warm server's syncs under way: with one, an exec's sync comes after its status (which
   * goes out when `statusSent` resolves), and later commands on the task wait for it.
   */
  syncs?: PendingSyncs;
  statusSent?: Promise<void>;
  /** Repositories found by earlier commands of a long-lived process. */
  repos?: RepositoryCache;
  /** Answers earlier commands of a long-lived process found (the engine, commits' trees, the git identity): process-caches.ts. */
  caches?: ProcessCaches;
}

export class MoatContext {
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  readonly paths: MoatPaths;
  readonly store: TaskStore;
  readonly progress: (line: string) => void;
  readonly hostUser: { uid: number; gid: number };
  /** Every secret value this context has read: all output passes through redaction of these. */
  readonly secretValues: Set<string>;
  readonly pool?: TaskPool;
  readonly syncs?: PendingSyncs;
  readonly statusSent?: Promise<void>;
  readonly caches?: ProcessCaches;
  private readonly options: MoatOptions;
  private readonly engineFactory: () => Promise<ContainerEngine>;
  private enginePromise?: Promise<ContainerEngine>;
  private repoPromise?: Promise<UserRepository>;

  constructor(options: MoatOptions = {}) {
    this.options = options;
    this.pool = options.pool;
    this.syncs = options.syncs;
    this.statusSent = options.statusSent;
    this.caches = options.caches;
    this.cwd = options.cwd ?? process.cwd();
    this.env = options.env ?? process.env;
    this.paths = options.paths ?? resolvePaths(this.env);
    this.store = new TaskStore(this.paths.home);
    this.progress = options.progress ?? (() => undefined);
    this.secretValues = options.secretValues ?? new Set<string>();
    this.hostUser = options.hostUser ?? { uid: process.getuid?.() ?? 1000, gid: process.getgid?.() ?? 1000 };
    // dockerode loads only when a command needs the engine.
    this.engineFactory = options.engine ?? (async () => (await import('../engine/open-engine.js')).openEngine(this.env));
  }

  /** The same place and settings, for work that outlives the current command (it reports nowhere). */
  detached(): MoatContext {
    return new MoatContext({ ...this.options, cwd: this.cwd, env: this.env, paths: this.paths, progress: undefined, secretValues: new Set() });
  }

  /** The engine, found and checked once per context; a dead daemon fails here, before anything is made. */
  engine(): Promise<ContainerEngine> {
    // A long-lived process keeps the engine it opened for the same environment and config (pinged
    // each time); an engine given by the caller is the caller's to keep.
    if (this.caches && !this.options.engine) {
      this.enginePromise ??= this.caches.engine(this.env, resolvePaths(this.env).userConfig, this.engineFactory);
    }
    this.enginePromise ??= this.engineFactory().then(async (engine) => {
      await engine.ping();
      return engine;
    });
    return this.enginePromise;
  }

  repo(): Promise<UserRepository> {
    this.repoPromise ??= this.options.repos ? this.options.repos.open(this.cwd) : UserRepository.open(this.cwd);
    return this.repoPromise;
  }

  async userConfig(): Promise<MoatConfig> {
    return loadConfigFile(this.paths.userConfig);
  }

  /** The repository's moat.yaml (or .yml/.json), read from the user's checkout, never from a task. */
  async repoConfig(repo: UserRepository): Promise<{ config: MoatConfig; file: string }> {
    for (const name of ['moat.yaml', 'moat.yml', 'moat.json']) {
      const file = join(repo.path, name);
      const config = await loadConfigFile(file);
      if (Object.keys(config).length > 0) return { config, file };
    }
    return { config: {}, file: join(repo.path, 'moat.yaml') };
  }

  async effectiveConfig(repo: UserRepository): Promise<EffectiveConfig> {
    const [user, repoConfig] = await Promise.all([this.userConfig(), this.repoConfig(repo)]);
    // MOAT_ISOLATION is the user's own setting (for a shell or a CI job): a repository cannot weaken it either.
    const isolation = parseIsolation(this.env.MOAT_ISOLATION, 'MOAT_ISOLATION');
    return effectiveConfig(isolation ? { ...user, isolation } : user, repoConfig.config, repoConfig.file, repo.path);
  }

  /** The uid/gid the sandbox runs as: the host user's own, but never root. */
  sandboxUser(config: EffectiveConfig): { uid: number; gid: number } {
    if (this.hostUser.uid === 0) return { uid: config.sandboxUid, gid: config.sandboxUid };
    return this.hostUser;
  }
}
