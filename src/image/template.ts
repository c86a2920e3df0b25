import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { parse } from 'yaml';
import { MoatError } from '../errors.js';
import { orderToolchains, parseTemplateRef, TOOLCHAINS } from '../domain/toolchain.js';

/**
 * What a template bundles: how its image is built, how its agent runs (interactively, and
 * non-interactively with a prompt), what network it asks for, the secret it uses, and the config
 * it seeds into the sandbox's home. Parsed strictly: a template decides what runs.
 */
const argv = z.array(z.string().min(1)).min(1);
export const templateSchema = z.strictObject({
  description: z.string(),
  /** Folder (under templates/) whose Dockerfile builds the image; default: the template's own. */
  build: z
    .string()
    .regex(/^[a-z0-9_-]+$/)
    .optional(),
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
  /**
   * The toolchains the image carries. Only for templates built by the shared recipe (build:
   * _toolchains), which installs what its TOOLCHAINS build argument names; such a template also
   * takes more (`NAME+python`).
   */
  toolchains: z.array(z.enum(TOOLCHAINS)).optional(),
  /** Add the toolchains detected in the repository to the template's own (the agent templates). */
  detect: z.boolean().optional(),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).optional(),
  home: z
    .record(
      z
        .string()
        .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/)
        .refine((p) => !p.split('/').includes('..'), 'no .. in home paths'),
      z.string(),
    )
    .optional(),
});
export type TemplateSpec = z.infer<typeof templateSchema> & { name: string };

/**
 * A template by reference: its folder's template.yaml, with the toolchains a reference such as
 * `codex+python` adds. A template whose image is its own Dockerfile takes no toolchains.
 */
export async function loadTemplate(dir: string, reference: string): Promise<TemplateSpec> {
  const ref = parseTemplateRef(reference);
  if (!ref) throw unknownRef(reference);
  const file = join(dir, ref.name, 'template.yaml');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  let spec: TemplateSpec = { name: ref.name, description: ref.name };
  if (text !== undefined) {
    const parsed = templateSchema.safeParse(parse(text));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new MoatError('E_CONFIG_INVALID', `${file}: ${issue.path.join('.')}: ${issue.message}`, { hint: 'fix the template definition' });
    }
    spec = { ...parsed.data, name: ref.name };
  }
  if (ref.extra.length === 0) return spec;
  if (!spec.toolchains) {
    throw new MoatError('E_TEMPLATE_UNKNOWN', `template ${ref.name} takes no toolchains (${reference})`, {
      hint: `its image is its own Dockerfile: use -t ${ref.name}, or a built-in template such as ${ref.name === 'shell' ? 'python' : 'codex'}+${ref.extra[0]}`,
    });
  }
  return { ...spec, name: reference, toolchains: orderToolchains([...spec.toolchains, ...ref.extra]) };
}

/** The template's folder name in a reference (`codex` in `codex+python`). */
export function templateName(reference: string): string {
  const ref = parseTemplateRef(reference);
  if (!ref) throw unknownRef(reference);
  return ref.name;
}

function unknownRef(reference: string): MoatError {
  return new MoatError('E_TEMPLATE_UNKNOWN', `unknown template ${JSON.stringify(reference)}`, {
    hint: `a template name, maybe followed by toolchains: +${TOOLCHAINS.join(', +')} (moat templates)`,
  });
}

/** The argv that runs the agent on a prompt: the prompt is one argument, never spliced into a shell line. */
export function agentCommand(template: TemplateSpec, prompt: string): string[] {
  if (!template.agent)
    throw new MoatError('E_USAGE', `template ${template.name} has no non-interactive agent command`, {
      hint: 'use moat exec TASK -- <command>, or an agent template (moat templates)',
    });
  return template.agent.map((part) => (part === '{prompt}' ? prompt : part));
}
