import { randomBytes } from 'node:crypto';
import type { UpOptions } from '../service/up.js';
import { namedTemplate } from '../image/template-image.js';
import { MoatError } from '../errors.js';
import type { Moat } from '../moat.js';

/**
 * What an MCP client may ask for when it creates a task. Every argument comes from a model that
 * a prompt may have turned (FIELD-NOTES: MCP), so the client may narrow what the user's config
 * gives a task and never widen it: its network is none or the allowlist the user's config already
 * has, its template is one that grants nothing (a template's hosts and key are granted only when
 * the human picks it), its limits, mounts, environment and secrets are the config's. Each refusal
 * says what the human would do instead.
 */
export function refusal(what: string, human: string): MoatError {
  return new MoatError('E_CONFIG_WIDENS', `refused over MCP: ${what}`, { hint: `only the human can do this: ${human}` });
}

/** Arguments that would widen a policy, with what the human does instead; any tool refuses them. */
export const WIDENING_ARGUMENTS: Record<string, string> = {
  allow: 'moat allow TASK HOST at the CLI, or egress.allow in ~/.config/moat/config.yaml',
  hosts: 'moat allow TASK HOST at the CLI, or egress.allow in ~/.config/moat/config.yaml',
  egress: 'egress.allow in ~/.config/moat/config.yaml, or moat allow TASK HOST',
  domains: 'moat allow TASK HOST at the CLI',
  network: 'network in ~/.config/moat/config.yaml, or moat up --network at the CLI',
  proxy: 'egress.upstreamProxy in ~/.config/moat/config.yaml',
  limits: 'limits in ~/.config/moat/config.yaml',
  memory: 'limits.memory in ~/.config/moat/config.yaml',
  cpus: 'limits.cpus in ~/.config/moat/config.yaml',
  pids: 'limits.pids in ~/.config/moat/config.yaml',
  disk: 'limits.disk in ~/.config/moat/config.yaml',
  mounts: 'mounts in ~/.config/moat/config.yaml',
  mount: 'mounts in ~/.config/moat/config.yaml',
  volumes: 'mounts in ~/.config/moat/config.yaml',
  env: 'env or envPassthrough in ~/.config/moat/config.yaml, or moat up -e NAME',
  environment: 'env in ~/.config/moat/config.yaml, or moat up -e NAME',
  secrets: 'secrets in ~/.config/moat/config.yaml (the sandbox then sees a placeholder only)',
  secret: 'secrets in ~/.config/moat/config.yaml (the sandbox then sees a placeholder only)',
  sshKeys: 'ssh.keys in ~/.config/moat/config.yaml, or moat up --ssh-key',
  user: 'nothing: sandboxes never run as root or as another user',
  privileged: 'nothing: sandboxes are never privileged',
  capabilities: 'nothing: sandboxes drop every capability',
  devcontainer: 'moat up --devcontainer at the CLI',
  force: 'moat rm --force TASK at the CLI (it discards commits nobody merged)',
  answer: 'moat allow TASK HOST (or --once), moat deny TASK HOST --pending, or moat ui: only the human answers a request',
  once: 'moat allow TASK HOST --once: only the human answers a request',
  approve: "moat allow TASK HOST, or moat approve for a repository's hosts",
  merge: 'moat merge TASK at the CLI, after moat diff TASK',
  push: 'moat push TASK at the CLI',
};

/** Refuses arguments a tool does not have: a widening one with what the human would do. */
export function checkArgumentNames(tool: string, args: Record<string, unknown>, known: readonly string[]): string[] {
  const unknown = Object.keys(args).filter((key) => !known.includes(key));
  for (const key of unknown) {
    const human = WIDENING_ARGUMENTS[key] ?? WIDENING_ARGUMENTS[key.toLowerCase()];
    if (human) throw refusal(`${tool} has no ${JSON.stringify(key)}: MCP cannot widen a task's network, limits, mounts, environment or secrets`, human);
  }
  return unknown;
}

/** A task name from a title: its words in the task-name alphabet, and a random tail against clashes. */
export function nameFromTitle(title: string | undefined): string | undefined {
  if (title === undefined) return undefined;
  const words = title
    .normalize('NFKD')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 30)
    .replace(/-+$/, '');
  const tail = randomBytes(2).toString('hex');
  return words ? `${words}-${tail}` : undefined;
}

/** A base ref as git names them; never an option, never a range or a revision expression. */
const BASE_REF = /^(?!-)(?!.*\.\.)(?!.*[~^:?*[\\@{ ])[A-Za-z0-9._/-]{1,200}$/;

export interface CreateRequest {
  title?: string;
  base?: string;
  template?: string;
  network?: 'none' | 'allowlist';
}

/** The up options for a client's request, or the refusal. */
export async function createOptions(moat: Moat, request: CreateRequest, signal: AbortSignal): Promise<UpOptions> {
  const ctx = moat.context;
  const repo = await ctx.repo();
  const config = await ctx.effectiveConfig(repo);
  if (request.base !== undefined && !BASE_REF.test(request.base)) {
    throw new MoatError('E_GIT_REF', `base ${JSON.stringify(request.base.slice(0, 200))} is not a branch, tag or commit name`, {
      hint: 'give a branch, tag or commit id (letters, digits, . _ / -)',
    });
  }
  if (request.network === 'allowlist' && config.egress.allow.length === 0) {
    throw refusal(
      'network allowlist with an empty allowlist: your config allows no host',
      'egress.allow in ~/.config/moat/config.yaml, or moat allow TASK HOST',
    );
  }
  if (request.template !== undefined) {
    const userConfig = await ctx.userConfig();
    const spec = await namedTemplate(request.template, config.templateDirs);
    const grants = [...(spec.egress ?? []), ...(spec.secret ? [`the key ${spec.secret.name}`] : [])];
    if (grants.length > 0 && request.template !== userConfig.template) {
      throw refusal(
        `template ${request.template} grants ${grants.join(', ')} when chosen`,
        `moat up -t ${request.template} at the CLI, or template: ${request.template} in ~/.config/moat/config.yaml`,
      );
    }
  }
  return { task: nameFromTitle(request.title), base: request.base, template: request.template, network: request.network, signal };
}
