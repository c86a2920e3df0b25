import { readFile, writeFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { MoatError } from '../errors.js';
import { BUILTIN_TEMPLATES_DIR, namedTemplate, templateCatalog } from '../image/template-image.js';
import { agentCommand, loadTemplate, type TemplateSpec } from '../image/template.js';
import type { ExecIO } from '../engine/engine.js';
import type { MoatContext } from './context.js';
import { execInTask, type ExecResult } from './exec.js';
import { auditFile, egressCounts } from './egress.js';
import { readAudit } from '../gateway/audit.js';
import { upstreamFailure, type UpstreamFailure } from '../domain/upstream-failure.js';
import { up } from './up.js';
import { git } from '../workspace/git.js';
import { formatTemplateRef, parseTemplateRef, TOOLCHAINS } from '../domain/toolchain.js';
import { expandHome } from '../config/paths.js';

export async function templates(ctx: MoatContext): Promise<Array<TemplateSpec & { source: string }>> {
  const userDirs = (await ctx
    .userConfig()
    .then((c) => c.templates ?? [])
    .catch(() => [])) as string[];
  const catalog = await templateCatalog(userDirs.map((dir) => expandHome(dir)));
  const names = [...catalog.keys()].sort();
  return Promise.all(
    names.map(async (name) => ({
      ...(await loadTemplate(catalog.get(name)!, name)),
      source: catalog.get(name) === BUILTIN_TEMPLATES_DIR ? 'built-in' : catalog.get(name)!,
    })),
  );
}

/**
 * `moat new -t NAME`: records the repository's template choice in its moat.yaml, keeping comments.
 * NAME is any reference `up -t` takes: a template, maybe with toolchains added (`node+python`).
 */
export async function newTemplate(ctx: MoatContext, template: string): Promise<{ file: string; template: string }> {
  const all = await templates(ctx);
  const ref = parseTemplateRef(template);
  const spec = ref && all.find((t) => t.name === ref.name);
  if (!ref || !spec) {
    throw new MoatError('E_TEMPLATE_UNKNOWN', `unknown template ${JSON.stringify(template)}`, {
      hint: `choose one of: ${all.map((t) => t.name).join(', ')}; add toolchains with +${TOOLCHAINS.join(', +')} (e.g. node+python)`,
    });
  }
  // As up loads it: a template whose image is its own Dockerfile takes no toolchains.
  await loadTemplate(spec.source === 'built-in' ? BUILTIN_TEMPLATES_DIR : spec.source, template);
  template = formatTemplateRef(ref);
  const repo = await ctx.repo();
  const file = join(repo.path, 'moat.yaml');
  const info = await lstat(file).catch(() => undefined);
  if (info && !info.isFile()) throw new MoatError('E_CONFIG_INVALID', `${file} is not a regular file`, { hint: 'replace it with a plain file' });
  const doc = parseDocument(info ? await readFile(file, 'utf8') : '');
  if (doc.errors.length > 0) throw new MoatError('E_CONFIG_INVALID', `${file}: ${doc.errors[0]!.message.split('\n')[0]}`, { hint: 'fix the YAML first' });
  if (!doc.contents) doc.contents = doc.createNode({}) as never;
  doc.set('template', template);
  await writeFile(file, doc.toString());
  return { file, template };
}

export interface AgentResult extends ExecResult {
  branch: string;
  diffStat: string;
  egress: { allowed: number; denied: number };
  /** When the agent failed and its last model API request through a route had failed: why. */
  upstream?: UpstreamFailure;
}

/** Runs a template's agent on a prompt, non-interactively, in a task (created when needed). */
export async function runAgent(ctx: MoatContext, prompt: string, io: ExecIO, options: { task?: string; template?: string } = {}): Promise<AgentResult> {
  const repo = await ctx.repo();
  let record = options.task ? await ctx.store.get(repo.key, options.task) : undefined;
  // Check the template can run an agent before creating anything.
  const templateName = record?.template ?? options.template ?? (await ctx.effectiveConfig(repo)).template;

  const config = await ctx.effectiveConfig(repo);
  const command = agentCommand(await namedTemplate(templateName, config.templateDirs), prompt);
  if (!record) record = await up(ctx, { task: options.task, template: options.template });
  // Audit times are the requests' starts, in whole milliseconds: a request of this run is not older.
  const started = new Date(Date.now() - 1).toISOString();
  const result = await execInTask(ctx, record.name, command, io);
  const fresh = await ctx.store.require(repo.key, record.name);
  const diffStat = (await git(['diff', '--stat', fresh.baseCommit, result.sync?.wip ?? fresh.syncedTip], { cwd: repo.path })).stdout;
  const upstream = result.exitCode === 0 ? undefined : upstreamFailure((await readAudit(auditFile(ctx, fresh))).records.filter((r) => r.time >= started));
  return { ...result, branch: fresh.branch, diffStat, egress: await egressCounts(ctx, fresh), ...(upstream ? { upstream } : {}) };
}
