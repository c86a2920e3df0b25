import { LineCounter, parseDocument, isNode } from 'yaml';
import type { z } from 'zod';
import { configSchema, type MoatConfig } from './schema.js';
import { configError, type ConfigProblem } from './load.js';

/** Parses YAML or JSON config text and validates it, reporting problems with file:line:col. */
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
      const pair = (parent as { items?: Array<{ key?: unknown }> } | null)?.items?.find(
        (item) => isNode(item.key) && (item.key as { value?: unknown }).value === sub[sub.length - 1],
      );
      if (pair && isNode(pair.key) && pair.key.range) return pair.key.range[0];
    }
    const node = sub.length === 0 ? doc.contents : doc.getIn(sub, true);
    if (isNode(node) && node.range) return node.range[0];
  }
  return undefined;
}
