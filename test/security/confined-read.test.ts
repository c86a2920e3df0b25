import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readConfinedFile } from '../../src/workspace/read-confined.js';

/** The host reads the snapshot the sandbox left in its workspace: no link may lead it elsewhere. */
describe('reading a file the sandbox wrote', () => {
  const root = mkdtempSync(join(tmpdir(), 'moat-confined-'));
  const workspace = join(root, 'workspace');
  const outside = join(root, 'host-secrets');
  mkdirSync(join(workspace, '.git'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(outside, 'moat-work-1'), 'HOST SECRET');
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('reads a regular file in the workspace', async () => {
    writeFileSync(join(workspace, '.git', 'moat-work-0'), 'snapshot');
    expect((await readConfinedFile(workspace, '.git/moat-work-0', 100))?.toString()).toBe('snapshot');
  });

  it('refuses a link as the file, and a link on the way to it', async () => {
    symlinkSync(join(outside, 'moat-work-1'), join(workspace, '.git', 'moat-work-1'));
    expect(await readConfinedFile(workspace, '.git/moat-work-1', 100)).toBeUndefined();
    const other = join(root, 'other');
    mkdirSync(other);
    symlinkSync(outside, join(other, '.git'));
    expect(await readConfinedFile(other, '.git/moat-work-1', 100)).toBeUndefined();
  });

  it('refuses a FIFO (without blocking), a directory and a file over the cap', async () => {
    execFileSync('mkfifo', [join(workspace, '.git', 'moat-work-2')]);
    expect(await readConfinedFile(workspace, '.git/moat-work-2', 100)).toBeUndefined();
    mkdirSync(join(workspace, '.git', 'moat-work-3'));
    expect(await readConfinedFile(workspace, '.git/moat-work-3', 100)).toBeUndefined();
    writeFileSync(join(workspace, '.git', 'moat-work-4'), 'x'.repeat(101));
    expect(await readConfinedFile(workspace, '.git/moat-work-4', 100)).toBeUndefined();
    expect(await readConfinedFile(workspace, '.git/missing', 100)).toBeUndefined();
  });
});
