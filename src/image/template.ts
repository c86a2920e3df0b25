import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { parse } from 'yaml';
import { MoatError } from '../errors.js';

/**
 * What a template bundles: how its image is built, how its agent runs (interactively, and
 * non-interactively with a prompt), what network it asks for, the secret it uses, and the config
 * it seeds into the sandbox's home. Parsed strictly: a template decides what runs.
 */
const argv = z.array(z.string().min(1)).min(1);
export const templateSchema = z.strictObject({
  description: z.string(),
  /** Folder (under templates/) whose Dockerfile builds the image; default: the template's own. */
  build: z.string().regex(/^[a-z0-9_-]+$/).optional(),
  args: z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/), z.string()).optional(),
  version: argv.optional(),
  interactive: argv.optional(),
  agent: argv.refine((a) => a.includes('{prompt}'), 'the agent command needs a {prompt} argument').optional(),
  egress: z.array(z.string()).optional(),
  secret: z
    .strictObject({
      name: z.string().regex(/^[A-Z_][A-Z0-9_]*$/),
      hosts: z.array(z.string()).min(1),
      header: z.string().default('Authorization'),
      route: z.string().optional(),
    })
    .optional(),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).optional(),
  home: z.record(z.string().regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/).refine((p) => !p.split('/').includes('..'), 'no .. in home paths'), z.string()).optional(),
});
export type TemplateSpec = z.infer<typeof templateSchema> & { name: string };

export async function loadTemplate(dir: string, name: string): Promise<TemplateSpec> {
  const file = join(dir, name, 'template.yaml');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return { name, description: name };
  const parsed = templateSchema.safeParse(parse(text));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new MoatError('E_CONFIG_INVALID', `${file}: ${issue.path.join('.')}: ${issue.message}`, { hint: 'fix the template definition' });
  }
  return { ...parsed.data, name };
}

/** The argv that runs the agent on a prompt: the prompt is one argument, never spliced into a shell line. */
export function agentCommand(template: TemplateSpec, prompt: string): string[] {
  if (!template.agent) throw new MoatError('E_USAGE', `template ${template.name} has no non-interactive agent command`, { hint: 'use moat exec TASK -- <command>, or an agent template (moat templates)' });
  return template.agent.map((part) => (part === '{prompt}' ? prompt : part));
}
