import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { MoatError } from '../errors.js';
import type { ContainerEngine } from '../engine/engine.js';
import { LABEL } from '../domain/labels.js';
import { MOAT_VERSION } from '../version.js';

/** Built-in templates ship in the package's templates/ folder. */
export const BUILTIN_TEMPLATES_DIR = fileURLToPath(new URL('../../templates/', import.meta.url));

export async function listTemplates(dir = BUILTIN_TEMPLATES_DIR): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
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
}

/**
 * The image a task runs: the template built on the base image for the sandbox's uid/gid. The tag
 * is a hash of everything that goes into it, so a cached image is reused and a change rebuilds.
 */
export async function ensureTemplateImage(engine: ContainerEngine, request: TemplateImageRequest): Promise<string> {
  const dir = join(request.templatesDir ?? BUILTIN_TEMPLATES_DIR, request.template);
  if (!(await stat(join(dir, 'Dockerfile')).catch(() => undefined))?.isFile()) {
    const known = await listTemplates(request.templatesDir);
    throw new MoatError('E_TEMPLATE_UNKNOWN', `unknown template ${JSON.stringify(request.template)}`, { hint: `choose one of: ${known.join(', ')}` });
  }
  const baseId = await engine.imageId(request.baseImage);
  if (!baseId) {
    throw new MoatError('E_IMAGE_MISSING', `base image ${request.baseImage} is not on this machine`, {
      hint: 'build it offline from Debian packages: bash scripts/build-base-image.sh (needs root and debootstrap)',
    });
  }
  const files = await templateFiles(dir);
  const hash = createHash('sha256');
  hash.update(`${MOAT_VERSION}\0${baseId}\0${request.uid}:${request.gid}\0`);
  for (const file of files) hash.update(`${file}\0`).update(await readFile(join(dir, file))).update('\0');
  const tag = `moat-${request.template}:${hash.digest('hex').slice(0, 16)}`;
  if (await engine.imageId(tag)) return tag;

  request.onProgress?.(`building image ${tag} (template ${request.template} on ${request.baseImage})`);
  await engine.buildImage({
    contextDir: dir,
    files,
    tag,
    buildArgs: { BASE_IMAGE: request.baseImage, MOAT_UID: String(request.uid), MOAT_GID: String(request.gid) },
    labels: { [LABEL.version]: MOAT_VERSION, [LABEL.role]: 'image', [LABEL.template]: request.template },
    onProgress: request.onProgress,
  });
  return tag;
}
