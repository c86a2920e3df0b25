import { linkLeavesRepo, looksBinary, LARGE_FILE_BYTES, packageScriptsChanged, pathFlags, type ChangedFile, type ReviewFlag } from '../domain/review-flags.js';
import { assertObjectId, git } from './git.js';

export interface ReviewedFile extends ChangedFile {
  flags: ReviewFlag[];
  additions?: number;
  deletions?: number;
  /** For links: the link text, as stored in git (never followed). */
  linkTarget?: string;
}

/**
 * Reads what changed between two commits in the user's repository, from git objects only, and
 * flags what a host tool might run or follow.
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
    if (match) counts.set(match[3]!, { additions: match[1] === '-' ? undefined : Number(match[1]), deletions: match[2] === '-' ? undefined : Number(match[2]) });
  }
  const parts = raw.stdout.split('\0');
  const files: ReviewedFile[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const meta = parts[i]!;
    const path = parts[i + 1]!;
    const [oldMode = '', newMode = '', oldSha = '', newSha = '', status = ''] = meta.replace(/^:/, '').split(' ');
    const file: ReviewedFile = { path, status: status[0] ?? '?', oldMode, newMode, flags: pathFlags({ path, status: status[0] ?? '?', oldMode, newMode }), ...counts.get(path) };
    if (file.status !== 'D' && newMode !== '160000') await blobFlags(repoPath, file, oldSha, newSha);
    files.push(file);
  }
  return files;
}

async function blobFlags(repoPath: string, file: ReviewedFile, oldSha: string, newSha: string): Promise<void> {
  const size = Number((await git(['cat-file', '-s', newSha], { cwd: repoPath })).stdout.trim());
  if (file.newMode === '120000') {
    file.linkTarget = (await git(['cat-file', 'blob', newSha], { cwd: repoPath, raw: true })).stdout;
    if (linkLeavesRepo(file.path, file.linkTarget)) file.flags.push('symlink-outside');
    return;
  }
  if (size > LARGE_FILE_BYTES) {
    file.flags.push('large');
    return;
  }
  const content = (await git(['cat-file', 'blob', newSha], { cwd: repoPath, raw: true })).stdout;
  if (looksBinary(Buffer.from(content))) file.flags.push('binary');
  if (/(^|\/)package\.json$/.test(file.path)) {
    const old = /^0+$/.test(oldSha) ? undefined : (await git(['cat-file', 'blob', oldSha], { cwd: repoPath, raw: true })).stdout;
    if (packageScriptsChanged(old, content)) file.flags.push('package-scripts');
  }
}
