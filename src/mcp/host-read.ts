import { closeSync, constants, fstatSync, lstatSync, openSync, read, type Stats } from 'node:fs';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY } = constants;
const DIRECTORY = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
const FILE = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
/** What a file that grows while it is read is read on by, per system call. */
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
  const fds: number[] = [];
  try {
    const opened = walk(root, path, owner, fds);
    if (!opened) return undefined;
    const { fd, st } = opened;
    // The walk is a handful of system calls on cached entries, done at once; the content is read
    // off the event loop (a cold 8 MiB file would hold it).
    const content = Buffer.allocUnsafe(Math.min(limit, st.size + 1));
    let got = 0;
    while (got < content.length) {
      const bytesRead = await readAt(fd, content, got, content.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    // More than the buffer held (a file that grows while it is read): read on, up to the limit, as the sandbox's server does.
    let body = content.subarray(0, got);
    if (got === content.length && got < limit) {
      const parts: Buffer[] = [body];
      let total = got;
      while (total < limit) {
        const more = Buffer.allocUnsafe(Math.min(CHUNK, limit - total));
        const bytesRead = await readAt(fd, more, 0, more.length, total);
        if (bytesRead === 0) break;
        parts.push(more.subarray(0, bytesRead));
        total += bytesRead;
      }
      body = Buffer.concat(parts, total);
    }
    let size = body.length;
    if (size === limit) size = st.size > limit ? st.size : (await readAt(fd, Buffer.alloc(1), 0, 1, limit)) > 0 ? limit + 1 : limit;
    return { content: body, size };
  } catch {
    return undefined;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** The open regular file at `path` under `root` and its stat, or undefined where the sandbox is to answer; every fd opened goes into `fds`. */
function walk(root: string, path: string[], owner: number, fds: number[]): { fd: number; st: Stats } | undefined {
  if (path.length === 0) return undefined;
  let dir = openSync(root, DIRECTORY);
  fds.push(dir);
  const top = fstatSync(dir);
  if (!top.isDirectory() || !allowed(top, owner, 0o100)) return undefined;
  for (const [i, name] of path.entries()) {
    if (name === '' || name === '.' || name === '..' || name.includes('/')) return undefined;
    const last = i === path.length - 1;
    const at = `/proc/self/fd/${dir}/${name}`;
    const seen = lstatSync(at);
    if (seen.dev !== top.dev || !(last ? seen.isFile() : seen.isDirectory()) || !allowed(seen, owner, last ? 0o400 : 0o100)) return undefined;
    const next = openSync(at, last ? FILE : DIRECTORY);
    fds.push(next);
    const st = fstatSync(next);
    if (st.dev !== seen.dev || st.ino !== seen.ino || !(last ? st.isFile() : st.isDirectory())) return undefined;
    if (last) return { fd: next, st };
    dir = next;
  }
  return undefined;
}

function readAt(fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buffer, offset, length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead))));
}

/** Whether the sandbox user (`owner`, never root) gets `bit` on this file: only its owner's bits count, and only for its owner. */
function allowed(st: Stats, owner: number, bit: number): boolean {
  return st.uid === owner && (st.mode & bit) !== 0;
}
