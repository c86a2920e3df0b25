import { backendPathDirs } from '../domain/review-content.js';
import {
  flagsFor,
  foldPath,
  insideAny,
  linkLeavesRepo,
  looksBinary,
  LARGE_FILE_BYTES,
  needsContent,
  type ChangedFile,
  type FileContent,
  type ReviewFlag,
} from '../domain/review-flags.js';
import { assertObjectId, git } from './git.js';

export interface ReviewedFile extends ChangedFile {
  flags: ReviewFlag[];
  additions?: number;
  deletions?: number;
  /** For links: the link text, as stored in git (never followed). */
  linkTarget?: string;
}

const NO_OBJECT = /^0+$/;

/** What Python can import from a folder on its path: modules, bytecode, extensions (packages are folders of them). */
const importable = (path: string): boolean => /\.(py|pyc|pyd|so)$/.test(foldPath(path));

/**
 * Reads what changed between two commits in the user's repository, from git objects only, and
 * flags what a host tool might run, follow or trust.
 */
export async function reviewChanges(repoPath: string, from: string, to: string): Promise<ReviewedFile[]> {
  assertObjectId(from, 'from');
  assertObjectId(to, 'to');
  const raw = await git(['diff', '--raw', '-z', '--no-renames', '--no-ext-diff', '--no-textconv', from, to], { cwd: repoPath, raw: true });
  const numstat = await git(['diff', '--numstat', '-z', '--no-renames', '--no-ext-diff', '--no-textconv', from, to], { cwd: repoPath, raw: true });
  const counts = new Map<string, { additions?: number; deletions?: number }>();
  const numParts = numstat.stdout.split('\0');
  for (const part of numParts) {
    const match = /^(\d+|-)\t(\d+|-)\t(.*)$/s.exec(part);
    if (match)
      counts.set(match[3]!, { additions: match[1] === '-' ? undefined : Number(match[1]), deletions: match[2] === '-' ? undefined : Number(match[2]) });
  }
  const parts = raw.stdout.split('\0');
  const files: ReviewedFile[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const meta = parts[i]!;
    const path = parts[i + 1]!;
    const [oldMode = '', newMode = '', oldSha = '', newSha = '', status = ''] = meta.replace(/^:/, '').split(' ');
    const change: ChangedFile = { path, status: status[0] ?? '?', oldMode, newMode };
    const file: ReviewedFile = { ...change, flags: [], ...counts.get(path) };
    const extra: ReviewFlag[] = [];
    let content: FileContent | undefined;
    if (file.status !== 'D' && newMode !== '160000') content = await readBlobs(repoPath, file, oldSha, newSha, extra);
    file.flags = [...new Set([...flagsFor(change, content), ...extra])];
    files.push(file);
  }
  await flagInTreeBackends(repoPath, [from, to], files);
  return files;
}

/** Flags facts of the new blob into `extra`; returns the text a content rule needs (undefined: unreadable, so rules fail closed). */
async function readBlobs(repoPath: string, file: ReviewedFile, oldSha: string, newSha: string, extra: ReviewFlag[]): Promise<FileContent | undefined> {
  const size = Number((await git(['cat-file', '-s', newSha], { cwd: repoPath })).stdout.trim());
  if (file.newMode === '120000') {
    file.linkTarget = (await git(['cat-file', 'blob', newSha], { cwd: repoPath, raw: true })).stdout;
    if (linkLeavesRepo(file.path, file.linkTarget)) extra.push('symlink-outside');
    return undefined;
  }
  if (size > LARGE_FILE_BYTES) {
    extra.push('large');
    return undefined;
  }
  const text = (await git(['cat-file', 'blob', newSha], { cwd: repoPath, raw: true })).stdout;
  if (looksBinary(Buffer.from(text))) extra.push('binary');
  if (!needsContent(file)) return { new: text };
  const old = NO_OBJECT.test(oldSha) || file.oldMode === '160000' ? undefined : (await git(['cat-file', 'blob', oldSha], { cwd: repoPath, raw: true })).stdout;
  return { old, new: text };
}

/**
 * PEP 517 in-tree backends: pip and build import the modules under a pyproject.toml's
 * `backend-path`, so a change there is a build hook even when pyproject.toml did not change. Reads
 * the pyproject.toml of every folder above a changed file, at both ends of the change.
 */
async function flagInTreeBackends(repoPath: string, commits: string[], files: ReviewedFile[]): Promise<void> {
  const changed = files.filter((f) => f.status !== 'D');
  if (changed.length === 0) return;
  const dirs = new Set<string>();
  for (const file of changed) {
    const segments = file.path.split('/').slice(0, -1);
    for (let i = 1; i <= segments.length; i += 1) dirs.add(`${segments.slice(0, i).join('/')}/`);
  }
  const backendDirs: string[] = [];
  for (const commit of commits) {
    // Root entries, then the entries of each folder above a changed file (ls-tree takes paths literally).
    const listings = [await git(['ls-tree', '-z', '--full-tree', commit], { cwd: repoPath, raw: true })];
    const below = [...dirs];
    for (let i = 0; i < below.length; i += 500) {
      listings.push(await git(['ls-tree', '-z', '--full-tree', commit, '--', ...below.slice(i, i + 500)], { cwd: repoPath, raw: true }));
    }
    for (const entry of listings.flatMap((l) => l.stdout.split('\0'))) {
      const match = /^\d+ blob ([0-9a-f]+)\t(.*)$/s.exec(entry);
      if (!match || foldPath(match[2]!).split('/').pop() !== 'pyproject.toml') continue;
      const text = (await git(['cat-file', 'blob', assertObjectId(match[1]!, 'pyproject')], { cwd: repoPath, raw: true })).stdout;
      backendDirs.push(...backendPathDirs(match[2]!.split('/').slice(0, -1).join('/'), text));
    }
  }
  if (backendDirs.length === 0) return;
  for (const file of changed) {
    if (importable(file.path) && insideAny(file.path, backendDirs) && !file.flags.includes('python-in-tree-backend')) file.flags.push('python-in-tree-backend');
  }
}
