/**
 * Changes a host tool might execute, follow or trust after a merge: the reviewer must see them.
 * Pure: works on paths, modes and blob text the caller read from git objects (never from the
 * agent's tree). The rules are the table in review-rules.ts.
 */
import { contentChanged } from './review-content.js';
import { REVIEW_RULES, type ReviewRule, type ReviewRuleId } from './review-rules.js';

/** Facts about the change itself, whatever the file. */
export type ChangeFlag = 'symlink' | 'symlink-outside' | 'executable' | 'submodule' | 'binary' | 'large';
/** A change flag, or the id of the rule (review-rules.ts) a file matched. */
export type ReviewFlag = ChangeFlag | ReviewRuleId;

export interface ChangedFile {
  path: string;
  status: string;
  oldMode: string;
  newMode: string;
}

/** The old and new text of a changed file; `old` is undefined for an added file. */
export interface FileContent {
  old?: string;
  new: string;
}

export const LARGE_FILE_BYTES = 5 * 1024 * 1024;

/**
 * The path as a case-insensitive, normalising file system (macOS, Windows) would compare it,
 * folded further to fail closed: compatibility forms (fullwidth letters, ligatures) and combining
 * marks go, invisible (default-ignorable) characters go (HFS+ ignored some), case folds both ways
 * (the Kelvin sign, long s and dotless i meet their ASCII letters), and trailing dots and spaces
 * of a segment go (Windows drops them). So `MAKEFILE`, `Makefile.` and `Ma\u200bkefile` are a Makefile.
 */
export function foldPath(path: string): string {
  return path
    .split('/')
    .map((segment) =>
      segment
        .normalize('NFKD')
        .replace(/[\p{M}\p{Default_Ignorable_Code_Point}]/gu, '')
        .toUpperCase()
        .toLowerCase()
        .replace(/[ .]+$/, ''),
    )
    .join('/');
}

type Matcher = (segments: string[]) => boolean;

function segmentRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i += 1) {
    const c = glob[i]!;
    if (c === '*') source += '[^/]*';
    else if (c === '{') {
      const end = glob.indexOf('}', i);
      source += `(?:${glob
        .slice(i + 1, end)
        .split(',')
        .map((alt) => alt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('|')})`;
      i = end;
    } else source += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/** A glob matched at any depth: its segments end the path, or (with a trailing `**`) lead to something below. */
function compile(pattern: string): Matcher {
  const parts = pattern.toLowerCase().split('/');
  const below = parts[parts.length - 1] === '**';
  const fixed = (below ? parts.slice(0, -1) : parts).map(segmentRegExp);
  return (segments) => {
    const at = (start: number): boolean => fixed.every((re, i) => re.test(segments[start + i]!));
    if (!below) return segments.length >= fixed.length && at(segments.length - fixed.length);
    for (let start = 0; start + fixed.length < segments.length; start += 1) if (at(start)) return true;
    return false;
  };
}

type Rule = ReviewRule & { id: ReviewRuleId };
const COMPILED: Array<{ rule: Rule; matchers: Matcher[] }> = REVIEW_RULES.map((rule) => ({ rule, matchers: rule.paths.map(compile) }));

function matchingRules(path: string): Rule[] {
  const segments = foldPath(path).split('/');
  return COMPILED.filter(({ matchers }) => matchers.some((m) => m(segments))).map(({ rule }) => rule);
}

/** Does flagging this file need its content (a rule with a content check matches its path)? */
export function needsContent(file: ChangedFile): boolean {
  return file.status !== 'D' && matchingRules(file.path).some((rule) => rule.content !== undefined);
}

/**
 * The flags of one changed file. Without `content`, rules with a content check flag on the path
 * alone (fail closed: the caller could not read it). A deletion is never flagged: it leaves no
 * file for a tool to run.
 */
export function flagsFor(file: ChangedFile, content?: FileContent): ReviewFlag[] {
  const flags = new Set<ReviewFlag>();
  if (file.status === 'D') return [];
  for (const rule of matchingRules(file.path)) {
    if (rule.content === undefined || content === undefined || contentChanged(rule.content, content.old, content.new)) flags.add(rule.id);
  }
  if (file.newMode === '120000') flags.add('symlink');
  if (file.newMode === '160000') flags.add('submodule');
  if (file.newMode === '100755' && file.oldMode !== '100755') flags.add('executable');
  return [...flags];
}

/** Is `path` inside one of `dirs` (repository-relative; '' is the root), compared folded? */
export function insideAny(path: string, dirs: readonly string[]): boolean {
  const folded = foldPath(path);
  return dirs.some((dir) => dir === '' || folded.startsWith(`${foldPath(dir)}/`));
}

/** A link whose text leaves the repository: absolute, or climbing above the root with `..`. */
export function linkLeavesRepo(linkPath: string, target: string): boolean {
  if (target.startsWith('/') || target.startsWith('~')) return true;
  let depth = linkPath.split('/').length - 1;
  for (const part of target.split('/')) {
    if (part === '..') depth -= 1;
    else if (part !== '.' && part !== '') depth += 1;
    if (depth < 0) return true;
  }
  return false;
}

export function looksBinary(head: Buffer): boolean {
  return head.subarray(0, 8000).includes(0);
}

const CHANGE_TEXT: Record<ChangeFlag, string> = {
  symlink: 'symbolic link',
  'symlink-outside': 'symbolic link pointing outside the repository',
  executable: 'new executable',
  submodule: 'submodule (gitlink)',
  binary: 'binary file',
  large: `large file (over ${LARGE_FILE_BYTES / 1024 / 1024} MiB)`,
};

/** What the reviewer reads for each flag: for a rule, its ecosystem and what a host tool does with the file. */
export const FLAG_TEXT: Record<ReviewFlag, string> = {
  ...CHANGE_TEXT,
  ...(Object.fromEntries(REVIEW_RULES.map((rule) => [rule.id, `${rule.ecosystem}: ${rule.reason}`])) as Record<ReviewRuleId, string>),
};

/** The rule table as docs/security.md shows it (a unit test keeps the two equal). */
export function renderRulesTable(): string {
  const cell = (text: string): string => text.replace(/\|/g, '\\|');
  const rows = REVIEW_RULES.map((rule: ReviewRule) => {
    const files = rule.files ?? rule.paths.map((p) => `\`${p}\``).join(', ');
    return `| ${cell(rule.ecosystem)} | ${cell(files)} | ${cell(rule.reason)} | \`${rule.id}\`: ${cell(rule.when ?? 'any change')} |`;
  });
  const changes = (Object.keys(CHANGE_TEXT) as ChangeFlag[]).map((flag) => `| any | ${cell(CHANGE_TEXT[flag])} | ${CHANGE_FACTS[flag]} | \`${flag}\` |`);
  return ['| ecosystem | files (any depth) | what a host tool does with it | flag: when |', '|---|---|---|---|', ...rows, ...changes].join('\n');
}

const CHANGE_FACTS: Record<ChangeFlag, string> = {
  symlink: 'tools follow it to whatever it names',
  'symlink-outside': 'tools follow it out of the checkout (~/.ssh, /etc)',
  executable: 'a file that became executable can be run by name',
  submodule: 'git submodule update checks out the commit it names',
  binary: 'the diff cannot show what it holds',
  large: 'the diff does not show it',
};
