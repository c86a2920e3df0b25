import { MoatError } from '../errors.js';
import { DEFAULT_LIMITS, LIMIT_CONFIG_KEY, widenedLimits, type Limits } from '../domain/limits.js';
import { parseSize } from '../domain/size.js';
import type { MoatConfig } from './schema.js';

/** Keys a repository's moat.yaml may set; anything else would widen what the sandbox gets. */
export const REPO_ALLOWED_KEYS = ['$schema', 'template', 'limits', 'network', 'git'] as const;

/** The settings a task actually runs with, after the user's grants and the repository's narrowing. */
export interface EffectiveConfig {
  template: string;
  baseImage: string;
  limits: Limits;
  network: 'none';
  env: Record<string, string>;
  envPassthrough: string[];
  git: { name?: string; email?: string };
  sandboxUid: number;
}

export const DEFAULT_BASE_IMAGE = 'moat-base:bookworm';

function limitsFrom(config: MoatConfig['limits']): Partial<Limits> {
  if (!config) return {};
  const out: Partial<Limits> = {};
  if (config.memory !== undefined) out.memoryBytes = parseSize(config.memory)!;
  if (config.cpus !== undefined) out.cpus = config.cpus;
  if (config.pids !== undefined) out.pids = config.pids;
  if (config.nofile !== undefined) out.nofile = config.nofile;
  if (config.tmp !== undefined) out.tmpBytes = parseSize(config.tmp)!;
  if (config.home !== undefined) out.homeBytes = parseSize(config.home)!;
  return out;
}

/**
 * Combines the user's config (which grants) with the repository's (which may only narrow).
 * The repository is attacker-controlled: anything in it that would widen what the sandbox gets
 * is refused, naming the user-config key that would grant it.
 */
export function effectiveConfig(user: MoatConfig, repo: MoatConfig, repoFile = 'moat.yaml'): EffectiveConfig {
  const widening: string[] = [];
  for (const key of Object.keys(repo)) {
    if (!(REPO_ALLOWED_KEYS as readonly string[]).includes(key)) widening.push(`${key} (grant it with "${key}" in your user config)`);
  }
  const granted: Limits = { ...DEFAULT_LIMITS, ...limitsFrom(user.limits) };
  const requested = limitsFrom(repo.limits);
  for (const key of widenedLimits(granted, requested)) {
    widening.push(`${LIMIT_CONFIG_KEY[key]} above the ${granted[key]} you granted (raise "${LIMIT_CONFIG_KEY[key]}" in your user config)`);
  }
  if (widening.length > 0) {
    throw new MoatError('E_CONFIG_WIDENS', `${repoFile} asks for more than you granted: ${widening.join('; ')}`, {
      hint: 'a repository may only narrow the sandbox; remove those keys from the repository config or grant them in ~/.config/moat/config.yaml',
      details: { widening },
    });
  }
  return {
    template: repo.template ?? user.template ?? 'shell',
    baseImage: user.baseImage ?? DEFAULT_BASE_IMAGE,
    limits: { ...granted, ...requested },
    network: 'none',
    env: { ...(user.env ?? {}) },
    envPassthrough: [...(user.envPassthrough ?? [])],
    git: { ...(user.git ?? {}), ...(repo.git ?? {}) },
    sandboxUid: user.sandboxUid ?? 1000,
  };
}
