import { createHash } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { MoatError } from '../errors.js';
import type { ContainerEngine } from '../engine/engine.js';
import { LABEL } from '../domain/labels.js';
import { MOAT_VERSION } from '../version.js';
import { loadTemplate, templateName, type TemplateSpec } from './template.js';

/** Built-in templates ship in the package's templates/ folder. */
export const BUILTIN_TEMPLATES_DIR = fileURLToPath(new URL('../../templates/', import.meta.url));
const SANDBOX_USER_SCRIPT = join(BUILTIN_TEMPLATES_DIR, 'sandbox-user.sh');

/** Where each template lives: the user's folders first, then the built-in ones. */
export async function templateCatalog(userDirs: string[] = []): Promise<Map<string, string>> {
  const catalog = new Map<string, string>();
  for (const dir of [...userDirs, BUILTIN_TEMPLATES_DIR]) {
    for (const name of await listTemplates(dir)) if (!catalog.has(name)) catalog.set(name, dir);
  }
  return catalog;
}

/** The folder holding a template (by reference: `codex+python` is in codex's), or a clear error naming the ones there are. */
export async function templateRoot(reference: string, userDirs: string[] = []): Promise<string> {
  const catalog = await templateCatalog(userDirs);
  const root = catalog.get(templateName(reference));
  if (!root)
    throw new MoatError('E_TEMPLATE_UNKNOWN', `unknown template ${JSON.stringify(reference)}`, {
      hint: `choose one of: ${[...catalog.keys()].sort().join(', ')} (moat templates)`,
    });
  return root;
}

/**
 * A task's template by its reference (`codex`, `node+python`), from the user's template folders or
 * the built-in ones: how every command that names a template loads it. `orBuiltIn` is for a task
 * made earlier, whose user folder may be gone since: the built-in template of that name serves.
 */
export async function namedTemplate(reference: string, userDirs: string[] = [], options: { orBuiltIn?: boolean } = {}): Promise<TemplateSpec> {
  const root = await templateRoot(reference, userDirs).catch((error: unknown) => {
    if (options.orBuiltIn) return BUILTIN_TEMPLATES_DIR;
    throw error;
  });
  return loadTemplate(root, reference);
}

/** Template folders; those starting with _ are shared build recipes, not templates. */
export async function listTemplates(dir = BUILTIN_TEMPLATES_DIR): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('_'))
    .map((e) => e.name)
    .sort();
}

async function templateFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) out.push(path);
    }
  };
  await walk('');
  return out.sort();
}

export interface TemplateImageRequest {
  template: string;
  baseImage: string;
  uid: number;
  gid: number;
  templatesDir?: string;
  onProgress?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Stops a build under way (the command was cancelled). */
  signal?: AbortSignal;
}

/**
 * The image a task runs: the template built on the base image for the sandbox's uid/gid. The tag
 * is a hash of everything that goes into it, so a cached image is reused and a change rebuilds.
 */
export async function ensureTemplateImage(engine: ContainerEngine, request: TemplateImageRequest): Promise<string> {
  return (await planTemplateImage(engine, request)).ensure();
}

/**
 * The image's tag (read from the base image's id and the template's files: a changed base or
 * template is a new tag), and `ensure`, which finds the image or builds it. Apart so that a caller
 * that already knows the image is there (a spare's container runs from it) skips the engine's inspect.
 */
export async function planTemplateImage(engine: ContainerEngine, request: TemplateImageRequest): Promise<{ tag: string; ensure: () => Promise<string> }> {
  const root = request.templatesDir ?? (await templateRoot(request.template));
  let spec = await loadTemplate(root, request.template);
  // A shared recipe (build: _toolchains) comes from the built-in templates when the user's folder has none.
  let dir = join(root, spec.build ?? templateName(request.template));
  if (spec.build && !(await stat(join(dir, 'Dockerfile')).catch(() => undefined))) {
    spec = await builtinRecipe(spec);
    dir = join(BUILTIN_TEMPLATES_DIR, spec.build!);
  }
  if (!(await stat(join(dir, 'Dockerfile')).catch(() => undefined))?.isFile()) {
    throw new MoatError('E_TEMPLATE_UNKNOWN', `template ${request.template} has no Dockerfile in ${dir}`, { hint: 'fix the template folder' });
  }
  const baseId = await engine.imageId(request.baseImage);
  if (!baseId) {
    throw new MoatError('E_IMAGE_MISSING', `base image ${request.baseImage} is not on this machine`, {
      // Podman's store is its own: the image Docker built is moved, never pulled from a registry.
      hint:
        engine.kind === 'podman'
          ? `move it from Docker: docker save ${request.baseImage} | podman load (or: bash scripts/setup-podman.sh rootful|rootless)`
          : 'build it offline from Debian packages: bash scripts/build-base-image.sh (needs root and debootstrap)',
    });
  }
  const files = await templateFiles(dir);
  const sandboxUser = await readFile(SANDBOX_USER_SCRIPT);
  const hash = createHash('sha256');
  hash
    .update(`${MOAT_VERSION}\0${baseId}\0${request.uid}:${request.gid}\0${JSON.stringify(buildArgs(spec))}\0`)
    .update(sandboxUser)
    .update('\0');
  for (const file of files)
    hash
      .update(`${file}\0`)
      .update(await readFile(join(dir, file)))
      .update('\0');
  // An image name has no `+`: codex+python is tagged moat-codex_python.
  const tag = `moat-${request.template.replaceAll('+', '_')}:${hash.digest('hex').slice(0, 16)}`;
  return { tag, ensure: async () => ((await engine.imageId(tag)) ? tag : buildTemplateImage(engine, request, spec, dir, files, sandboxUser, tag)) };
}

async function buildTemplateImage(
  engine: ContainerEngine,
  request: TemplateImageRequest,
  spec: TemplateSpec,
  dir: string,
  files: string[],
  sandboxUser: Buffer,
  tag: string,
): Promise<string> {
  request.onProgress?.(`building image ${tag} (template ${request.template} on ${request.baseImage})`);
  // The build context: the template's files, the host's CA bundle for the build's downloads, and
  // the step that makes the sandbox's user (one recipe for every template).
  const context = await mkdtemp(join(tmpdir(), 'moat-build-'));
  try {
    await cp(dir, context, { recursive: true });
    await writeFile(join(context, 'build-ca.pem'), await hostCaBundle(request.env ?? process.env));
    await writeFile(join(context, 'sandbox-user.sh'), sandboxUser);
    await buildIn(engine, request, spec, context, [...files, 'build-ca.pem', 'sandbox-user.sh'], tag);
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  return tag;
}

/**
 * A user's template written before the shared recipe names a built-in folder that has no Dockerfile
 * of its own any more (`build: shell`, `build: node`, `build: _agent`): that template's recipe and
 * toolchains stand in, so it builds what it did before.
 */
async function builtinRecipe(spec: TemplateSpec): Promise<TemplateSpec> {
  if (spec.build === '_agent') return { ...spec, build: '_toolchains', toolchains: spec.toolchains ?? ['node'] };
  if (!spec.build || spec.build.startsWith('_')) return spec;
  const builtin = await loadTemplate(BUILTIN_TEMPLATES_DIR, spec.build);
  if (!builtin.build || (await stat(join(BUILTIN_TEMPLATES_DIR, spec.build, 'Dockerfile')).catch(() => undefined))) return spec;
  return { ...spec, build: builtin.build, toolchains: spec.toolchains ?? builtin.toolchains };
}

/** The CAs this host trusts (where TLS goes through an inspecting proxy, its CA is among them). */
async function hostCaBundle(env: NodeJS.ProcessEnv): Promise<string> {
  for (const file of [env.SSL_CERT_FILE, env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt']) {
    if (!file) continue;
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text?.includes('BEGIN CERTIFICATE')) return text;
  }
  return '';
}

/**
 * The template's build arguments; a template of the shared recipe also gets the toolchains to
 * install, space-separated in moat's order (so equal sets share cached layers).
 */
function buildArgs(spec: TemplateSpec): Record<string, string> {
  return { ...(spec.args ?? {}), ...(spec.toolchains ? { TOOLCHAINS: spec.toolchains.join(' ') } : {}) };
}

async function buildIn(
  engine: ContainerEngine,
  request: TemplateImageRequest,
  spec: TemplateSpec,
  context: string,
  files: string[],
  tag: string,
): Promise<void> {
  await engine.buildImage({
    contextDir: context,
    files,
    tag,
    buildArgs: { ...buildArgs(spec), BASE_IMAGE: request.baseImage, MOAT_UID: String(request.uid), MOAT_GID: String(request.gid) },
    labels: { [LABEL.version]: MOAT_VERSION, [LABEL.role]: 'image', [LABEL.template]: request.template },
    onProgress: request.onProgress,
    signal: request.signal,
  });
}
