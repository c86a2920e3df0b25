/**
 * Content checks of review rules: did a change touch the part of a file a host tool executes or
 * trusts? Each check fails closed: what it cannot read (bad JSON, TOML it cannot split safely)
 * counts as changed.
 */
import type { ContentCheck } from './review-rules.js';

export function contentChanged(check: ContentCheck, oldText: string | undefined, newText: string): boolean {
  switch (check) {
    case 'package-json':
      return packageJsonChanged(oldText, newText);
    case 'pyproject':
      return tomlChanged(oldText, newText, pyprojectHarmless);
    case 'cargo-toml':
      return tomlChanged(oldText, newText, cargoHarmless);
    case 'go-generate':
      return addedLines(goGenerateLines(oldText), goGenerateLines(newText));
    case 'go-mod':
      return goModDirectives(oldText) !== goModDirectives(newText);
  }
}

/**
 * package.json fields no package manager or tool runs anything from. Everything else counts:
 * scripts (install hooks run on install, the rest on `npm test`/`npm run`), bin, gypfile,
 * workspaces, every dependency field, overrides/resolutions, packageManager (corepack runs it),
 * and the configs of tools that load plugins (eslintConfig, prettier, jest, babel, …).
 */
const PACKAGE_JSON_HARMLESS = new Set([
  'name',
  'version',
  'description',
  'keywords',
  'homepage',
  'bugs',
  'license',
  'author',
  'contributors',
  'maintainers',
  'funding',
  'files',
  'repository',
  'private',
  'publishConfig',
  'engines',
  'os',
  'cpu',
  'main',
  'module',
  'exports',
  'imports',
  'type',
  'types',
  'typings',
  'typesVersions',
  'sideEffects',
  'browser',
  'man',
]);

export function packageJsonChanged(oldText: string | undefined, newText: string): boolean {
  const parse = (text: string): Record<string, unknown> | undefined => {
    try {
      const value: unknown = JSON.parse(text);
      return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  };
  const next = parse(newText);
  if (next === undefined) return true;
  const prev = oldText === undefined ? {} : parse(oldText);
  if (prev === undefined) return true;
  const keys = new Set([...Object.keys(prev), ...Object.keys(next)]);
  return [...keys].some((key) => !PACKAGE_JSON_HARMLESS.has(key) && JSON.stringify(prev[key]) !== JSON.stringify(next[key]));
}

/** A key path in a TOML file (table segments then key segments); segments a parser would read differently are marked odd. */
type KeyPath = readonly string[];
const ODD = '\u0000odd';

/** Splits one `a."b".c` key or header into segments; anything beyond bare and simple quoted keys is odd (fails closed). */
function keySegments(text: string): string[] {
  const segments: string[] = [];
  const re = /\s*(?:([A-Za-z0-9_-]+)|"([^"\\]*)"|'([^']*)')\s*(\.|$)/y;
  let index = 0;
  while (index < text.length) {
    re.lastIndex = index;
    const match = re.exec(text);
    if (!match) return [...segments, ODD];
    segments.push(match[1] ?? match[2] ?? match[3] ?? ODD);
    index = re.lastIndex;
    if (match[4] === '') break;
  }
  return segments;
}

/**
 * Splits TOML text into entries, keyed by the full key path, each with its text. Undefined when a
 * multi-line string, or an inline table spanning lines (TOML 1.1), could make a line look like a
 * header or key that a TOML parser reads as part of another value. Comments and blank lines do not count.
 */
export function tomlEntries(text: string): Map<string, { path: KeyPath; text: string }> | undefined {
  if (text.includes('"""') || text.includes("'''")) return undefined;
  if (text.split('\n').some((line) => (line.match(/\{/g)?.length ?? 0) !== (line.match(/\}/g)?.length ?? 0))) return undefined;
  const entries = new Map<string, { path: KeyPath; text: string }>();
  let table: string[] = [];
  let current: { path: KeyPath; text: string } | undefined;
  const enter = (path: string[]): { path: KeyPath; text: string } => {
    const id = JSON.stringify(path);
    const entry = entries.get(id) ?? { path, text: '' };
    entries.set(id, entry);
    return entry;
  };
  for (const raw of text.replace(/^\uFEFF/, '').split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      // A header; one this splitter cannot read is a table of its own that never counts as harmless.
      const header = /^\[\[?([^[\]]*)\]\]?\s*(?:#.*)?$/.exec(line);
      table = header ? keySegments(header[1]!) : [ODD];
      current = enter(table);
      current.text += `${line}\n`;
      continue;
    }
    const key = /^((?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'))*)\s*=/.exec(line);
    if (key) current = enter([...table, ...keySegments(key[1]!)]);
    current ??= enter(table);
    current.text += `${line}\n`;
  }
  return entries;
}

function tomlChanged(oldText: string | undefined, newText: string, harmless: (path: KeyPath) => boolean): boolean {
  const next = tomlEntries(newText);
  const prev = oldText === undefined ? new Map() : tomlEntries(oldText);
  if (next === undefined || prev === undefined) return oldText !== newText;
  const ids = new Set([...prev.keys(), ...next.keys()]);
  for (const id of ids) {
    const a = prev.get(id);
    const b = next.get(id);
    if (a?.text === b?.text) continue;
    const path = (a ?? b)!.path;
    if (!harmless(path)) return true;
  }
  return false;
}

const under = (path: KeyPath, prefix: readonly string[]): boolean => prefix.every((segment, i) => path[i] === segment) && path.length > prefix.length;

const PYPROJECT_PROJECT_HARMLESS = new Set([
  'name',
  'version',
  'description',
  'readme',
  'requires-python',
  'license',
  'license-files',
  'authors',
  'maintainers',
  'keywords',
  'classifiers',
  'urls',
]);
/** Linters whose pyproject settings load no code (no plugin settings). */
const PYPROJECT_TOOLS_HARMLESS = new Set(['ruff', 'black', 'isort', 'pyright', 'codespell']);

function pyprojectHarmless(path: KeyPath): boolean {
  if (under(path, ['project'])) return PYPROJECT_PROJECT_HARMLESS.has(path[1]!);
  if (under(path, ['tool'])) return PYPROJECT_TOOLS_HARMLESS.has(path[1]!);
  return false;
}

const CARGO_PACKAGE_HARMLESS = new Set([
  'name',
  'version',
  'authors',
  'description',
  'documentation',
  'readme',
  'homepage',
  'repository',
  'license',
  'license-file',
  'keywords',
  'categories',
  'edition',
  'rust-version',
  'publish',
  'exclude',
  'include',
]);

function cargoHarmless(path: KeyPath): boolean {
  if (under(path, ['package'])) return CARGO_PACKAGE_HARMLESS.has(path[1]!);
  return path[0] === 'badges';
}

/** `//go:generate` lines (the go command reads them only at the start of a line; leading space is allowed here to fail closed). */
function goGenerateLines(text: string | undefined): string[] {
  return (text ?? '')
    .split(/\r?\n/)
    .filter((line) => /^\s*\/\/go:generate\b/.test(line))
    .map((line) => line.trim());
}

/** Is a line in `next` that `prev` does not have (as many times)? */
function addedLines(prev: string[], next: string[]): boolean {
  const counts = new Map<string, number>();
  for (const line of prev) counts.set(line, (counts.get(line) ?? 0) + 1);
  for (const line of next) {
    const left = counts.get(line) ?? 0;
    if (left === 0) return true;
    counts.set(line, left - 1);
  }
  return false;
}

/** go.mod directives that change which toolchain runs (go, toolchain), what is built from where (replace) and what runs (tool, godebug). */
const GO_MOD_WATCHED = ['go', 'toolchain', 'replace', 'tool', 'godebug'];

/** The watched go.mod directives, sorted, as one text. */
function goModDirectives(text: string | undefined): string {
  const kept: string[] = [];
  let block: string | undefined;
  for (const raw of (text ?? '').split(/\r?\n/)) {
    const line = raw.replace(/\/\/.*$/, '').trim();
    if (line === '') continue;
    if (block !== undefined) {
      if (line === ')') block = undefined;
      else if (GO_MOD_WATCHED.includes(block)) kept.push(`${block} ${line.replace(/\s+/g, ' ')}`);
      continue;
    }
    const [verb = '', ...rest] = line.split(/\s+/);
    if (rest.join(' ') === '(') {
      block = verb;
      continue;
    }
    if (GO_MOD_WATCHED.includes(verb)) kept.push(`${verb} ${rest.join(' ')}`);
  }
  return kept.sort().join('\n');
}

/**
 * The folders a pyproject.toml's `backend-path` names, relative to the repository (the project's
 * own folder is `projectDir`). PEP 517 backends there are imported by pip and build. An entry that
 * is not a plain string counts as the whole project folder (fails closed); one leaving the project
 * is dropped, as pip refuses it.
 */
export function backendPathDirs(projectDir: string, pyprojectText: string): string[] {
  const dirs: string[] = [];
  for (const match of pyprojectText.matchAll(/["']?backend-path["']?\s*=\s*\[([^\]]*)\]?/g)) {
    const list = match[1]!;
    const strings = [...list.matchAll(/"([^"]*)"|'([^']*)'/g)];
    if (strings.length === 0 && list.trim() !== '') dirs.push(projectDir);
    for (const item of strings) {
      const value = item[1] ?? item[2] ?? '';
      if (value.includes('\\')) {
        dirs.push(projectDir);
        continue;
      }
      const parts = projectDir === '' ? [] : projectDir.split('/');
      const depth = parts.length;
      let escaped = false;
      for (const part of value.split('/')) {
        if (part === '..') {
          if (parts.length === depth) escaped = true;
          else parts.pop();
        } else if (part !== '.' && part !== '') parts.push(part);
      }
      if (!escaped) dirs.push(parts.join('/'));
    }
  }
  return dirs;
}
