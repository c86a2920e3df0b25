import { MoatError } from '../errors.js';
import { DEFAULT_LIMITS, LIMIT_CONFIG_KEY, parseDuration, widenedLimits, type Limits } from '../domain/limits.js';
import { parseSize } from '../domain/size.js';
import type { MoatConfig } from './schema.js';
import { expandHome } from './paths.js';
import { buildPolicy, type NetworkMode } from '../domain/egress-policy.js';
import { buildRequestRules, type RequestRuleSpec } from '../domain/request-rules.js';
import { ISOLATION_STRENGTH, type Isolation } from '../domain/isolation.js';

/** Keys a repository's moat.yaml may set; anything else would widen what the sandbox gets. */
export const REPO_ALLOWED_KEYS = ['$schema', 'template', 'limits', 'network', 'git', 'egress', 'isolation'] as const;

const NETWORK_WIDTH: Record<NetworkMode, number> = { none: 0, allowlist: 1, open: 2 };

/** The settings a task actually runs with, after the user's grants and the repository's narrowing. */
export interface EffectiveConfig {
  template: string;
  /** Who chose the template: a repository's choice does not bring the template's network grants. */
  templateSource: 'repo' | 'user' | 'default';
  baseImage: string;
  limits: Limits;
  network: NetworkMode;
  /** `rules`: method and path rules, the user's (which grant) and the repository's (which narrow). */
  egress: { allow: string[]; deny: string[]; rules: RequestRuleSpec[] };
  /** The user's network settings for the gateway (never from a repository). */
  egressNetwork: EgressNetwork;
  env: Record<string, string>;
  envPassthrough: string[];
  git: { name?: string; email?: string };
  sandboxUid: number;
  secrets: Record<string, NonNullable<MoatConfig['secrets']>[string]>;
  /** The user's template folders, searched before the built-in ones. */
  templateDirs: string[];
  sshKeys: string[];
  mounts: Array<{ source: string; target: string }>;
  /** runc or gvisor: the user's choice, made stronger (never weaker) by the repository's. */
  isolation: Isolation;
}

/** How long a held connection waits for a human when egress.ask is on. */
export const DEFAULT_ASK_SECONDS = 60;

export const DEFAULT_BASE_IMAGE = 'moat-base:bookworm';

/** How the user's network reaches the world, from the user's config alone. */
export interface EgressNetwork {
  allowAddresses: string[];
  trustCa: string[];
  trustHostCa: boolean;
  upstreamProxy?: string;
  noProxy?: string[];
  /** Hold undecided connections for a human's answer (service/pending.ts), this many seconds. */
  askSeconds?: number;
}

/** egress keys only the user's config may set: each one widens what a sandbox reaches or trusts. */
const USER_ONLY_EGRESS_KEYS = ['allowAddresses', 'trustCa', 'trustHostCa', 'upstreamProxy', 'noProxy', 'ask', 'askSeconds'] as const;

export function egressNetworkOf(user: MoatConfig): EgressNetwork {
  return {
    allowAddresses: [...(user.egress?.allowAddresses ?? [])],
    trustCa: (user.egress?.trustCa ?? []).map((path) => expandHome(path)),
    trustHostCa: user.egress?.trustHostCa === true,
    ...(user.egress?.upstreamProxy !== undefined ? { upstreamProxy: user.egress.upstreamProxy } : {}),
    ...(user.egress?.noProxy !== undefined ? { noProxy: [...user.egress.noProxy] } : {}),
    ...(user.egress?.ask === true ? { askSeconds: user.egress.askSeconds ?? DEFAULT_ASK_SECONDS } : {}),
  };
}

type AllowEntries = NonNullable<NonNullable<MoatConfig['egress']>['allow']>;

/** The plain host entries of an allow list, and the method/path rules its `host: {…}` entries carry. */
export function splitAllow(entries: AllowEntries, from: 'user' | 'repo'): { hosts: string[]; rules: RequestRuleSpec[] } {
  const hosts: string[] = [];
  const rules: RequestRuleSpec[] = [];
  for (const entry of entries) {
    if (typeof entry === 'string') {
      hosts.push(entry);
      continue;
    }
    for (const [host, rule] of Object.entries(entry)) {
      // The user's rule grants its host; a repository's only narrows one that is granted otherwise.
      if (from === 'user') hosts.push(host);
      rules.push({
        host,
        from,
        ...(rule.methods ? { methods: rule.methods.map((m) => m.toUpperCase()) } : {}),
        ...(rule.paths ? { paths: [...rule.paths] } : {}),
        ...(rule.maxBody !== undefined ? { maxBody: parseSize(rule.maxBody)! } : {}),
      });
    }
  }
  return { hosts, rules };
}

function limitsFrom(config: MoatConfig['limits']): Partial<Limits> {
  if (!config) return {};
  const out: Partial<Limits> = {};
  if (config.memory !== undefined) out.memoryBytes = parseSize(config.memory)!;
  if (config.cpus !== undefined) out.cpus = config.cpus;
  if (config.pids !== undefined) out.pids = config.pids;
  if (config.nofile !== undefined) out.nofile = config.nofile;
  if (config.tmp !== undefined) out.tmpBytes = parseSize(config.tmp)!;
  if (config.home !== undefined) out.homeBytes = parseSize(config.home)!;
  if (config.disk !== undefined) out.diskBytes = parseSize(config.disk)!;
  if (config.idle !== undefined) out.idleSeconds = parseDuration(config.idle)!;
  if (config.timeout !== undefined) out.timeoutSeconds = parseDuration(config.timeout)!;
  return out;
}

/**
 * Combines the user's config (which grants) with the repository's (which may only narrow).
 * The repository is attacker-controlled: anything in it that would widen what the sandbox gets
 * is refused, naming the user-config key that would grant it.
 */
export function effectiveConfig(user: MoatConfig, repo: MoatConfig, repoFile = 'moat.yaml', repoPath?: string): EffectiveConfig {
  const widening: string[] = [];
  for (const key of Object.keys(repo)) {
    if (!(REPO_ALLOWED_KEYS as readonly string[]).includes(key)) widening.push(`${key} (grant it with "${key}" in your user config)`);
  }
  for (const key of USER_ONLY_EGRESS_KEYS) {
    if (repo.egress?.[key] !== undefined) widening.push(`egress.${key} (set it in your user config if you mean it)`);
  }
  const granted: Limits = { ...DEFAULT_LIMITS, ...limitsFrom(user.limits) };
  const requested = limitsFrom(repo.limits);
  for (const key of widenedLimits(granted, requested)) {
    widening.push(`${LIMIT_CONFIG_KEY[key]} above the ${granted[key]} you granted (raise "${LIMIT_CONFIG_KEY[key]}" in your user config)`);
  }
  const userNetwork = user.network ?? 'none';
  if (repo.network && NETWORK_WIDTH[repo.network] > NETWORK_WIDTH[userNetwork]) {
    widening.push(`network: ${repo.network} wider than your ${userNetwork} (set "network" in your user config)`);
  }
  const userIsolation = user.isolation ?? 'runc';
  if (repo.isolation && ISOLATION_STRENGTH[repo.isolation] < ISOLATION_STRENGTH[userIsolation]) {
    widening.push(`isolation: ${repo.isolation} weaker than your ${userIsolation} (set "isolation" in your user config)`);
  }
  // A repository may *request* hosts; they count only once you approved them (moat approve).
  const userAllow = splitAllow(user.egress?.allow ?? [], 'user');
  const repoAllow = splitAllow(repo.egress?.allow ?? [], 'repo');
  const requestedHosts = repoAllow.hosts;
  const approved = new Set(repoPath ? (user.approvals?.[repoPath]?.egress ?? []) : []);
  const unapproved = requestedHosts.filter((host) => !approved.has(host));
  if (unapproved.length > 0) {
    throw new MoatError('E_CONFIG_WIDENS', `${repoFile} requests network access to ${unapproved.join(', ')}, which you have not approved`, {
      hint: 'review the hosts, then run `moat approve` (it records your approval for this repository in your user config), or remove them from moat.yaml',
      details: { requested: unapproved },
    });
  }
  if (widening.length > 0) {
    throw new MoatError('E_CONFIG_WIDENS', `${repoFile} asks for more than you granted: ${widening.join('; ')}`, {
      hint: 'a repository may only narrow the sandbox; remove those keys from the repository config or grant them in ~/.config/moat/config.yaml',
      details: { widening },
    });
  }
  return {
    // Yours first: the repository's choice, and after it the toolchains its files point at
    // (repo-templates.ts), apply when your config names none.
    template: user.template ?? repo.template ?? 'shell',
    templateSource: user.template ? 'user' : repo.template ? 'repo' : 'default',
    baseImage: user.baseImage ?? DEFAULT_BASE_IMAGE,
    limits: { ...granted, ...requested },
    // Approved requests bring the network they need; a repository's own "network" still only narrows.
    network: repo.network ?? (userNetwork === 'none' && requestedHosts.length > 0 ? 'allowlist' : userNetwork),
    egress: {
      allow: [...userAllow.hosts, ...requestedHosts],
      deny: [...(user.egress?.deny ?? []), ...(repo.egress?.deny ?? [])],
      rules: [...userAllow.rules, ...repoAllow.rules],
    },
    egressNetwork: egressNetworkOf(user),
    env: { ...(user.env ?? {}) },
    envPassthrough: [...(user.envPassthrough ?? [])],
    git: { ...(user.git ?? {}), ...(repo.git ?? {}) },
    sandboxUid: user.sandboxUid ?? 1000,
    secrets: { ...(user.secrets ?? {}) },
    sshKeys: [...(user.ssh?.keys ?? [])],
    mounts: (user.mounts ?? []).map((m) => ({ source: expandHome(m.source), target: m.target })),
    templateDirs: (user.templates ?? []).map((dir) => expandHome(dir)),
    isolation: repo.isolation && ISOLATION_STRENGTH[repo.isolation] > ISOLATION_STRENGTH[userIsolation] ? repo.isolation : userIsolation,
  };
}

/** Checks egress rules up front, so a typo is a config error and not a silent "denied" later. */
export function checkEgressRules(
  mode: NetworkMode,
  allow: string[],
  deny: string[],
  where: string,
  allowAddresses: string[] = [],
  rules: RequestRuleSpec[] = [],
): void {
  const policy = buildPolicy(mode, allow, deny, allowAddresses);
  const requests = buildRequestRules(rules);
  const errors = [...('errors' in policy ? policy.errors : []), ...('errors' in requests ? requests.errors : [])];
  if (errors.length > 0) {
    throw new MoatError('E_CONFIG_INVALID', `${where}: ${errors[0]}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`, {
      hint: 'egress entries are host names, *.domain wildcards, host:port, IP addresses or CIDR blocks; a host name may carry { methods, paths, maxBody }',
    });
  }
}
