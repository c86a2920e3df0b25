import { constants } from 'node:fs';
import { open, readlink, realpath } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Reads a regular file the sandbox wrote under `root`, without following a link out of it.
 * Node has no openat, so the check comes after the open: the kernel names what was really
 * opened (/proc/self/fd), and anything but `root/relative` itself (a swapped-in link on the way,
 * a FIFO, a device, a file over maxBytes) gives undefined, nothing read.
 */
export async function readConfinedFile(root: string, relative: string, maxBytes: number): Promise<Buffer | undefined> {
  const expected = join(await realpath(root), relative);
  let handle;
  try {
    handle = await open(expected, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch {
    return undefined;
  }
  try {
    if ((await readlink(`/proc/self/fd/${handle.fd}`)) !== expected) return undefined;
    const info = await handle.stat();
    if (!info.isFile() || info.size > maxBytes) return undefined;
    const content = await handle.readFile();
    return content.length <= maxBytes ? content : undefined;
  } finally {
    await handle.close();
  }
}
