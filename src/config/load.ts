import { lstat, readFile } from 'node:fs/promises';
import { MoatError } from '../errors.js';
import type { MoatConfig } from './schema.js';

/** One problem in a config file, with where it is and how to fix it. */
export interface ConfigProblem {
  file: string;
  line: number;
  col: number;
  path: string;
  message: string;
}

const MAX_CONFIG_BYTES = 256 * 1024;

/**
 * Reads a YAML or JSON config file (JSON is YAML). A missing file is an empty config.
 * The file is never evaluated, and a link is refused: a repository's moat.yaml is written by
 * whoever controls the repository, and a link could point our error messages at a host secret.
 */
export async function loadConfigFile(file: string): Promise<MoatConfig> {
  let info;
  try {
    info = await lstat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new MoatError('E_CONFIG_INVALID', `${file}: cannot read config: ${(error as Error).message}`, { hint: "check the file's permissions", cause: error });
  }
  if (!info.isFile()) {
    throw new MoatError('E_CONFIG_INVALID', `${file}: config must be a regular file, not a link or directory`, { hint: 'replace it with a plain file' });
  }
  if (info.size > MAX_CONFIG_BYTES) {
    throw new MoatError('E_CONFIG_INVALID', `${file}: config is ${info.size} bytes, more than ${MAX_CONFIG_BYTES}`, {
      hint: 'a moat config is a few lines of YAML',
    });
  }
  // The parser (yaml + zod) loads only when there is a file to parse: most commands start faster.
  const { parseConfig } = await import('./parse.js');
  return parseConfig(await readFile(file, 'utf8'), file);
}

export function configError(problems: ConfigProblem[], hint: string): MoatError {
  const lines = problems.map((p) => `${p.file}:${p.line}:${p.col}: ${p.path ? `${p.path}: ` : ''}${p.message}`);
  const more = lines.length > 1 ? ` (and ${lines.length - 1} more)` : '';
  return new MoatError('E_CONFIG_INVALID', `${lines[0]}${more}`, { hint, details: { problems, lines } });
}
