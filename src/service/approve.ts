import { lstat, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseDocument } from 'yaml';
import { MoatError } from '../errors.js';
import { checkEgressRules, splitAllow } from '../config/effective.js';
import type { MoatContext } from './context.js';
import { approvalKey, repoTemplates } from './repo-templates.js';

export interface ApproveResult {
  repo: string;
  file: string;
  approved: string[];
  /** Repository templates approved, as name@tree. */
  templates: string[];
}

/**
 * `moat approve`: the user's explicit yes to the hosts a repository's moat.yaml asks for, stored
 * in the user's config under approvals.<repository path> (comments and order kept). A later change
 * of the request in moat.yaml asks again.
 */
export async function approveRepo(ctx: MoatContext): Promise<ApproveResult> {
  const repo = await ctx.repo();
  const { config } = await ctx.repoConfig(repo);
  // Method and path rules only narrow: nothing to approve in them.
  const requested = splitAllow(config.egress?.allow ?? [], 'repo').hosts;
  const file = ctx.paths.userConfig;
  const head = await repo.resolveCommit('HEAD');
  const templates = [...(await repoTemplates(repo, head))].map(([name, tree]) => approvalKey(name, tree));
  if (requested.length === 0 && templates.length === 0) return { repo: repo.path, file, approved: [], templates: [] };
  if (requested.length > 0) checkEgressRules('allowlist', requested, [], 'moat.yaml egress.allow');
  const info = await lstat(file).catch(() => undefined);
  if (info && !info.isFile()) throw new MoatError('E_CONFIG_INVALID', `${file} is not a regular file`, { hint: 'replace it with a plain file' });
  const doc = parseDocument(info ? await readFile(file, 'utf8') : '');
  if (doc.errors.length > 0) throw new MoatError('E_CONFIG_INVALID', `${file}: ${doc.errors[0]!.message.split('\n')[0]}`, { hint: 'fix your config first' });
  const previous = (doc.getIn(['approvals', repo.path, 'egress']) as { toJSON?: () => string[] } | undefined)?.toJSON?.() ?? [];
  const previousTemplates = (doc.getIn(['approvals', repo.path, 'templates']) as { toJSON?: () => string[] } | undefined)?.toJSON?.() ?? [];
  if (!doc.contents) doc.contents = doc.createNode({}) as never;
  if (requested.length > 0) doc.setIn(['approvals', repo.path, 'egress'], doc.createNode([...new Set([...previous, ...requested])]));
  if (templates.length > 0) doc.setIn(['approvals', repo.path, 'templates'], doc.createNode([...new Set([...previousTemplates, ...templates])]));
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, doc.toString(), { mode: 0o600 });
  return { repo: repo.path, file, approved: requested, templates };
}
