import { lstat, readFile } from 'node:fs/promises';
import { LineCounter, parseDocument, isNode } from 'yaml';
import type { z } from 'zod';
import { MoatError } from '../errors.js';
import { configSchema, type MoatConfig } from './schema.js';

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
    throw new MoatError('E_CONFIG_INVALID', `${file}: cannot read config: ${(error as Error).message}`, { hint: 'check the file\'s permissions', cause: error });
  }
  if (!info.isFile()) {
    throw new MoatError('E_CONFIG_INVALID', `${file}: config must be a regular file, not a link or directory`, { hint: 'replace it with a plain file' });
  }
  if (info.size > MAX_CONFIG_BYTES) {
    throw new MoatError('E_CONFIG_INVALID', `${file}: config is ${info.size} bytes, more than ${MAX_CONFIG_BYTES}`, { hint: 'a moat config is a few lines of YAML' });
  }
  return parseConfig(await readFile(file, 'utf8'), file);
}

export function parseConfig(text: string, file: string): MoatConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined): { line: number; col: number } => (offset === undefined ? { line: 1, col: 1 } : lineCounter.linePos(offset));

  if (doc.errors.length > 0) {
    const problems = doc.errors.map((err) => ({ file, ...at(err.pos[0]), path: '', message: err.message.split('\n')[0]! }));
    throw configError(problems, 'fix the YAML syntax at that position');
  }
  const value: unknown = doc.toJS({ maxAliasCount: 50 }) ?? {};
  const result = configSchema.safeParse(value);
  if (result.success) return result.data;

  const problems = result.error.issues.map((issue): ConfigProblem => {
    const path = issue.path.map(String);
    // Point at the offending key itself for unknown keys, at the value otherwise.
    const keys = issue.code === 'unrecognized_keys' ? (issue as z.core.$ZodIssueUnrecognizedKeys).keys : [];
    const nodePath = keys.length > 0 ? [...issue.path, keys[0]!] : issue.path;
    const pos = positionOf(doc, nodePath as (string | number)[], keys.length > 0);
    const where = [...path, ...(keys.length > 0 ? [keys.join(', ')] : [])].join('.') || '(top level)';
    return { file, ...at(pos), path: where, message: issue.code === 'unrecognized_keys' ? `unknown key${keys.length > 1 ? 's' : ''}` : issue.message };
  });
  throw configError(problems, 'see the keys and values in README.md#configuration or schema/config.schema.json');
}

function positionOf(doc: ReturnType<typeof parseDocument>, path: (string | number)[], wantKey: boolean): number | undefined {
  for (let depth = path.length; depth >= 0; depth -= 1) {
    const sub = path.slice(0, depth);
    if (wantKey && depth === path.length && sub.length > 0) {
      const parent = sub.length === 1 ? doc.contents : doc.getIn(sub.slice(0, -1), true);
      const pair = (parent as { items?: Array<{ key?: unknown }> } | null)?.items?.find((item) => isNode(item.key) && (item.key as { value?: unknown }).value === sub[sub.length - 1]);
      if (pair && isNode(pair.key) && pair.key.range) return pair.key.range[0];
    }
    const node = sub.length === 0 ? doc.contents : doc.getIn(sub, true);
    if (isNode(node) && node.range) return node.range[0];
  }
  return undefined;
}

export function configError(problems: ConfigProblem[], hint: string): MoatError {
  const lines = problems.map((p) => `${p.file}:${p.line}:${p.col}: ${p.path ? `${p.path}: ` : ''}${p.message}`);
  const more = lines.length > 1 ? ` (and ${lines.length - 1} more)` : '';
  return new MoatError('E_CONFIG_INVALID', `${lines[0]}${more}`, { hint, details: { problems, lines } });
}
