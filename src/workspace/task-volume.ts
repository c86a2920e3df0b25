import { access, constants, mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MoatError } from '../errors.js';
import { runProcess } from './run-process.js';

/**
 * The filesystem a task writes to. Where moat has the privilege (root, loop devices, mkfs.ext4),
 * each task gets a sparse ext4 image of fixed size, loop-mounted: the kernel refuses writes past
 * the cap (ENOSPC) and the host loses no more than the cap. Elsewhere it is a plain directory,
 * and moat says so.
 */
export type DiskEnforcement = 'loop' | 'none';

/** Why the workspace has no disk cap here, in the words `moat up`, `doctor` and `ls` use. */
export function diskUncappedWhy(inVolume: boolean): string {
  return inVolume
    ? "the engine does not share moat's filesystem, so no loop-mounted ext4 image can back the workspace, and a Docker volume has no size limit of its own"
    : 'a capped per-task filesystem needs moat to run as root, with loop devices and mkfs.ext4';
}

const PATH_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };

export async function loopMountAvailable(uid: number = process.getuid?.() ?? 1000): Promise<boolean> {
  if (uid !== 0) return false;
  const mkfs = await Promise.any(['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4', '/usr/local/sbin/mkfs.ext4'].map((p) => access(p, constants.X_OK))).then(
    () => true,
    () => false,
  );
  if (!mkfs) return false;
  return access('/dev/loop-control', constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
}

export function volumeImage(taskDir: string): string {
  return join(taskDir, 'disk.img');
}

export function volumeMount(taskDir: string): string {
  return join(taskDir, 'volume');
}

async function isMounted(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  // mountinfo escapes spaces and such as octal; moat's own paths are plain.
  return info.split('\n').some((line) => line.split(' ')[4] === path);
}

async function run(cmd: string, args: string[]): Promise<void> {
  const result = await runProcess(cmd, args, { cwd: '/', env: PATH_ENV });
  if (result.exitCode !== 0) {
    throw new MoatError('E_ENGINE_FAILED', `${cmd} failed: ${(result.stderr || result.stdout || result.error?.message || '').trim().split('\n')[0]}`, {
      hint: 'moat needs root, loop devices and mkfs.ext4 for a disk cap; `moat doctor` tells what works here',
    });
  }
}

/** Creates the task's volume: a capped loop-mounted image, or a plain directory. */
export async function createVolume(taskDir: string, bytes: number, enforcement: DiskEnforcement): Promise<void> {
  const mountPath = volumeMount(taskDir);
  await mkdir(mountPath, { recursive: true, mode: 0o755 });
  if (enforcement === 'none') return;
  const image = volumeImage(taskDir);
  const handle = await open(image, 'wx', 0o600);
  try {
    await handle.truncate(bytes);
  } finally {
    await handle.close();
  }
  // -m 0: no blocks reserved for root, the cap is what the task gets.
  await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', image]);
  await mountVolume(taskDir);
}

/** Mounts the volume again after a reboot or an engine restart; a no-op when mounted. */
export async function mountVolume(taskDir: string): Promise<void> {
  const mountPath = volumeMount(taskDir);
  if (await isMounted(mountPath)) return;
  await access(volumeImage(taskDir)).then(
    () => run('mount', ['-o', 'loop,nosuid,nodev', volumeImage(taskDir), mountPath]),
    () => undefined,
  );
}

/** Unmounts the volume and keeps its image (a stopped task); the next container mounts it again. */
export async function unmountVolume(taskDir: string): Promise<void> {
  const mountPath = volumeMount(taskDir);
  if (!(await isMounted(mountPath))) return;
  const result = await runProcess('umount', [mountPath], { cwd: '/', env: PATH_ENV });
  if (result.exitCode !== 0) await runProcess('umount', ['-l', mountPath], { cwd: '/', env: PATH_ENV });
}

/** Unmounts and deletes the volume's image. Links inside are never followed: the image is dropped whole. */
export async function releaseVolume(taskDir: string): Promise<void> {
  await unmountVolume(taskDir);
  await rm(volumeImage(taskDir), { force: true });
}

/** Task directories under a folder (a moat home's repositories) whose volume is mounted. */
export async function mountedVolumes(under: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const prefix = `${under}/`;
  return info
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((path) => path.startsWith(prefix) && path.endsWith('/volume'))
    .map((path) => path.slice(0, -'/volume'.length));
}
