/**
 * Files a host tool may execute or trust after a merge, one row per tool family. The table is
 * data: review-flags.ts matches it, docs/security.md shows it (a unit test keeps the two equal).
 *
 * Paths are globs matched at any depth (a tool run in a sub-folder, a monorepo package, a
 * nested checkout all look there), on the folded path (see foldPath): case, compatibility forms,
 * combining marks, invisible characters and trailing dots/spaces do not count, because macOS and
 * Windows file systems open such names as the file the tool asks for. `*` stays in one segment,
 * `{a,b}` is either, and a trailing `**` is anything below.
 */
import { LANGUAGE_RULES } from './review-rules-languages.js';
import { TOOL_RULES } from './review-rules-tools.js';

export interface ReviewRule {
  id: string;
  ecosystem: string;
  paths: readonly string[];
  /** Shown to the reviewer: what a host tool does with the file. */
  reason: string;
  /** Flag only when this check of old and new content says so (unreadable content is flagged). */
  content?: ContentCheck;
  /** For the docs: when a content-checked file is flagged. */
  when?: string;
  /** For the docs, when the paths are not plain globs. */
  files?: string;
}

export type ContentCheck = 'package-json' | 'pyproject' | 'cargo-toml' | 'go-generate' | 'go-mod';

export const REVIEW_RULES = [...LANGUAGE_RULES, ...TOOL_RULES] as const;

export type ReviewRuleId = (typeof REVIEW_RULES)[number]['id'];
