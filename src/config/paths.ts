import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where moat keeps its files, following XDG; MOAT_HOME / MOAT_CONFIG override (tests use them). */
export interface MoatPaths {
  /** State: task records and workspaces. */
  home: string;
  /** The user's config file. */
  userConfig: string;
}

export function resolvePaths(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): MoatPaths {
  const dataHome = env.XDG_DATA_HOME || join(home, '.local', 'share');
  const configHome = env.XDG_CONFIG_HOME || join(home, '.config');
  return {
    home: env.MOAT_HOME || join(dataHome, 'moat'),
    userConfig: env.MOAT_CONFIG || join(configHome, 'moat', 'config.yaml'),
  };
}

/** A path from the user's config with a leading `~/` made absolute; the one place that expands it. */
export function expandHome(path: string, home: string = homedir()): string {
  return path.startsWith('~/') ? join(home, path.slice(2)) : path;
}
