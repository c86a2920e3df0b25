import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readOnHost } from '../../src/mcp/host-read.js';

/**
 * read_file's host-side fast path (src/mcp/host-read.ts) against a hostile workspace on the
 * host: it must answer only plain files the sandbox user could read, and leave everything else
 * (links to /etc, to the user's ~/.ssh, to /proc; fifos; other owners; names swapped mid-walk)
 * to the sandbox's own file server by answering undefined, without ever returning a byte from
 * outside the workspace or blocking.
 */
describe('mcp: the host-side read of a workspace file', () => {
  const root = mkdtempSync(join(tmpdir(), 'moat-host-read-'));
  const ws = join(root, 'workspace');
  const outside = join(root, 'outside');
  const uid = process.getuid!();
  mkdirSync(join(ws, 'src', 'deep'), { recursive: true });
  mkdirSync(join(outside, '.ssh'), { recursive: true });
  writeFileSync(join(outside, '.ssh', 'id_rsa'), 'HOST-SSH-KEY-MARKER\n');
  writeFileSync(join(ws, 'src', 'deep', 'f.txt'), 'INSIDE\n');
  const read = (path: string, limit = 8 * 1024 * 1024, owner = uid) => readOnHost(ws, path.split('/'), owner, limit);

  afterAll(() => rmSync(root, { recursive: true, force: true, maxRetries: 5 }));

  it('reads a plain file, with its size, up to the limit', async () => {
    expect(await read('src/deep/f.txt')).toEqual({ content: Buffer.from('INSIDE\n'), size: 7 });
    expect(await read('src/deep/f.txt', 3)).toEqual({ content: Buffer.from('INS'), size: 7 });
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 'z');
    writeFileSync(join(ws, 'big'), big);
    expect((await read('big'))!.content.equals(big)).toBe(true);
  });

  it('leaves every link to the sandbox, inside the workspace or out of it', async () => {
    const links: Record<string, string> = {
      'l-shadow': '/etc/shadow',
      'l-passwd': '/etc/passwd',
      'l-hostkey': join(outside, '.ssh', 'id_rsa'),
      'l-hosthome': outside,
      'l-proc': '/proc/self/root/etc/passwd',
      'l-cwd': '/proc/self/cwd',
      'l-inside': 'src/deep/f.txt',
      'l-dir-inside': 'src/deep',
      'l-dotdot': '../outside/.ssh/id_rsa',
    };
    for (const [name, target] of Object.entries(links)) symlinkSync(target, join(ws, name));
    for (const path of [...Object.keys(links), 'l-hosthome/.ssh/id_rsa', 'l-dir-inside/f.txt', 'l-cwd/package.json'])
      expect(await read(path), path).toBeUndefined();
  });

  it('leaves fifos, devices-by-link, directories and missing names to the sandbox, at once', async () => {
    execFileSync('mkfifo', [join(ws, 'fifo')]);
    for (const path of ['fifo', 'src', 'src/deep', 'missing', 'src/missing/f', 'src/deep/f.txt/x', '.', '..', '../outside/.ssh/id_rsa'])
      expect(await read(path), path).toBeUndefined();
    // A writer waiting for a reader is still waiting: the fifo was never opened.
    const writer = spawn('sh', ['-c', `echo x > '${join(ws, 'fifo')}'`]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(writer.exitCode).toBeNull();
    writer.kill('SIGKILL');
  });

  it('reads only what the sandbox user could: its own files, with the owner bits', async () => {
    writeFileSync(join(ws, 'noread'), 'SECRET\n');
    chmodSync(join(ws, 'noread'), 0o000);
    mkdirSync(join(ws, 'nosearch'));
    writeFileSync(join(ws, 'nosearch', 'f'), 'x');
    chmodSync(join(ws, 'nosearch'), 0o600);
    expect(await read('noread')).toBeUndefined();
    expect(await read('nosearch/f')).toBeUndefined();
    expect(await read('src/deep/f.txt', 100, uid + 1)).toBeUndefined();
    chmodSync(join(ws, 'nosearch'), 0o700);
  });

  it('keeps the limit on sparse and growing files, and states their size', async () => {
    writeFileSync(join(ws, 'sparse'), '');
    truncateSync(join(ws, 'sparse'), 100 * 1024 ** 3);
    const sparse = await read('sparse', 65536);
    expect(sparse!.content.length).toBe(65536);
    expect(sparse!.size).toBe(100 * 1024 ** 3);
    const grower = spawn('sh', ['-c', `while :; do echo endless; done > '${join(ws, 'grow')}'`]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const grow = await read('grow', 65536);
    grower.kill('SIGKILL');
    expect(grow!.content.length).toBe(65536);
    expect(grow!.size).toBeGreaterThan(65536);
  });

  it('never follows a name swapped for a link while it walks', async () => {
    mkdirSync(join(ws, 'real'));
    writeFileSync(join(ws, 'real', 'f.txt'), 'SWAPPED-INSIDE\n');
    writeFileSync(join(outside, 'f.txt'), 'OUTSIDE\n');
    writeFileSync(join(ws, 'rf'), 'SWAPPED-FILE\n');
    symlinkSync(join(outside, 'f.txt'), join(ws, 'lf'));
    // As in the sandbox's test: `d` is a folder, then a link out; `f` a file, then a link out.
    const swapper = spawn(
      'sh',
      ['-c', 'cd "$0" && while :; do rm -rf d; cp -a real d; rm -rf d; ln -s "$1" d; cp -P lf f.l; mv -Tf f.l f; cp rf f.r; mv -Tf f.r f; done', ws, outside],
      // A group of its own, killed whole: a cp or mv of the loop left running would write into the
      // folder while afterAll removes it (ENOTEMPTY).
      { stdio: 'ignore', detached: true },
    );
    const seen = new Set<string>();
    try {
      for (let i = 0; i < 3000; i += 1) {
        for (const path of ['d/f.txt', 'f']) {
          const got = await read(path);
          const text = got?.content.toString('utf8') ?? 'fallback';
          expect(text).not.toMatch(/OUTSIDE|HOST-SSH/);
          seen.add(text);
        }
      }
    } finally {
      const exited = new Promise((resolve) => swapper.once('exit', resolve));
      process.kill(-swapper.pid!, 'SIGKILL');
      await exited;
    }
    // The race ran: some reads met the folder or the file, some fell back to the sandbox.
    expect(seen.has('fallback')).toBe(true);
    expect([...seen].some((s) => s.startsWith('SWAPPED'))).toBe(true);
  }, 120_000);
});
