import { constants, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY } = constants;
const DIRECTORY = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
const FILE = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
/** One read's buffer: a whole 1 MiB file in one system call. */
const CHUNK = 1024 * 1024;

/**
 * read_file's fast path where the workspace is a host folder bind-mounted into the sandbox (local
 * engines, runc): the host reads the file itself instead of asking the sandbox's file server,
 * whose answer crosses the engine's exec stream (about 300 ms for 1 MiB on a loaded machine,
 * against a few ms here).
 *
 * It answers only the plain case, and only when it is sure the sandbox user could read the same
 * bytes: every component a real directory or, last, a regular file, on the workspace's own
 * filesystem, owned by the sandbox user with the owner's search/read bit set. Anything else (a
 * link, a fifo, a device, a missing name, another owner, a name that changed while it was
 * opened, any error) returns undefined, and the sandbox's file server answers as before, with
 * its own link rules and errors. So the host never follows a link the sandbox made, and never
 * reads a byte the sandbox could not.
 *
 * Node has no openat: each step opens `/proc/self/fd/<dir>/<name>` with O_NOFOLLOW, which is
 * openat(dir, name) (the kernel jumps to the open directory, then looks up one name without
 * following it). Each name is lstat'ed first and the opened handle checked to be that very
 * file (device and inode), so a name swapped mid-walk fails the check or the open (ELOOP), and
 * a fifo is never opened for reading (a regular file is all that is opened, O_NONBLOCK besides).
 */
export async function readOnHost(root: string, path: string[], owner: number, limit: number): Promise<{ content: Buffer; size: number } | undefined> {
  const handles: FileHandle[] = [];
  try {
    let dir = await fs.open(root, DIRECTORY);
    handles.push(dir);
    const top = await dir.stat();
    if (!top.isDirectory() || !allowed(top, owner, 0o100)) return undefined;
    if (path.length === 0) return undefined;
    let file: FileHandle | undefined;
    let opened: Stats | undefined;
    for (const [i, name] of path.entries()) {
      if (name === '' || name === '.' || name === '..' || name.includes('/')) return undefined;
      const last = i === path.length - 1;
      const at = `/proc/self/fd/${dir.fd}/${name}`;
      const seen = await fs.lstat(at);
      if (seen.dev !== top.dev || !(last ? seen.isFile() : seen.isDirectory()) || !allowed(seen, owner, last ? 0o400 : 0o100)) return undefined;
      const next = await fs.open(at, last ? FILE : DIRECTORY);
      handles.push(next);
      const st = await next.stat();
      if (st.dev !== seen.dev || st.ino !== seen.ino || !(last ? st.isFile() : st.isDirectory())) return undefined;
      if (last) [file, opened] = [next, st];
      else dir = next;
    }
    if (!file || !opened) return undefined;
    const content = Buffer.allocUnsafe(Math.min(limit, opened.size + 1));
    let got = 0;
    while (got < content.length) {
      const { bytesRead } = await file.read(content, got, Math.min(CHUNK * 8, content.length - got), got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    // More than the buffer held (a file that grows while it is read): read on, up to the limit, as the sandbox's server does.
    let body = content.subarray(0, got);
    if (got === content.length && got < limit) {
      const rest: Buffer[] = [body];
      let total = got;
      for (;;) {
        const more = Buffer.allocUnsafe(Math.min(CHUNK, limit - total));
        if (more.length === 0) break;
        const { bytesRead } = await file.read(more, 0, more.length, total);
        if (bytesRead === 0) break;
        rest.push(more.subarray(0, bytesRead));
        total += bytesRead;
      }
      body = Buffer.concat(rest, total);
    }
    let size = body.length;
    if (size === limit) {
      const probe = Buffer.alloc(1);
      size = opened.size > limit ? opened.size : (await file.read(probe, 0, 1, limit)).bytesRead > 0 ? limit + 1 : limit;
    }
    return { content: body, size };
  } catch {
    return undefined;
  } finally {
    await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
  }
}

/** Whether the sandbox user (`owner`, never root) gets `bit` on this file: only its owner's bits count, and only for its owner. */
function allowed(st: Stats, owner: number, bit: number): boolean {
  return st.uid === owner && (st.mode & bit) !== 0;
}
