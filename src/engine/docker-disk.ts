import type Docker from 'dockerode';
import { access } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import { MoatError } from '../errors.js';
import { LABEL } from '../domain/labels.js';
import type { DiskCap, DiskCapSupport } from './engine.js';

/**
 * A workspace disk cap the engine makes, so that moat needs no root of its own (a user of the
 * `docker` group): a sparse ext4 image in a moat-owned volume, attached to a loop device by a
 * short-lived helper container, and the workspace a `local` volume that the engine mounts from
 * that device. The kernel refuses writes past the image's size (ENOSPC) and the engine's disk
 * loses no more than the cap.
 *
 * The helper runs moat's fixed script from the user's base image (never the task's image, which a
 * repository chooses), with SYS_ADMIN and MKNOD only, no network, and of the host's devices only
 * loop-control and the loop block devices (major 7).
 */

/** The engine volume that holds every capped workspace's image (one per engine). */
export const DISKS_VOLUME = 'moat-disks';
/** A capped workspace volume carries this label: its removal detaches its device and drops its image. */
export const DISK_LABEL = 'moat.disk';
/** The image whose helper made a capped volume (the user's base image then): its removal runs the same. */
export const DISK_HELPER_LABEL = 'moat.disk.helper';

/**
 * The helper's script; its inputs are positional arguments, never spliced into the text.
 * Devices are found by their backing image (name and inode), never assumed from a number: a loop
 * device's number is reused once detached (after a reboot, another image may sit on /dev/loopN).
 */
const SCRIPT = `set -eu
op=$1; img=/disks/$2.img
node() { [ -e "/dev/loop$1" ] || mknod "/dev/loop$1" b 7 "$1"; }
find_dev() {
  [ -e "$img" ] || return 0
  ino=$(stat -c %i "$img")
  for f in /sys/block/loop*/loop/backing_file; do
    [ -e "$f" ] || continue
    b=$(cat "$f"); b=\${b% (deleted)}
    [ "\${b##*/}" = "\${img##*/}" ] || continue
    n=\${f#/sys/block/loop}; n=\${n%%/*}
    node "$n"
    [ "$(losetup -n -O BACK-INO "/dev/loop$n" | tr -d ' ')" = "$ino" ] && echo "/dev/loop$n"
  done
  return 0
}
case $op in
  attach)
    if [ ! -e "$img" ]; then
      truncate -s "$3" "$img.new"
      # Its root is the sandbox user's from the start ($4 = uid:gid): no second helper to chown it.
      mkfs.ext4 -q -F -m 0 -E "lazy_itable_init=1,lazy_journal_init=1,root_owner=$4" "$img.new"
      # A workspace starts empty (the seed refuses anything else, and git would see lost+found).
      debugfs -w -R 'rmdir lost+found' "$img.new" >/dev/null 2>&1
      mv "$img.new" "$img"
    fi
    dev=$(find_dev | head -n 1)
    tries=0
    while [ -z "$dev" ] && [ $tries -lt 5 ]; do
      tries=$((tries + 1))
      free=$(losetup -f); node "\${free#/dev/loop}"
      # Another attacher may take the same free device first: then ask again.
      losetup "$free" "$img" && dev=$free
    done
    [ -n "$dev" ] && echo "$dev";;
  find) find_dev | head -n 1;;
  release) for dev in $(find_dev); do losetup -d "$dev"; done;;
  detach)
    for dev in $(find_dev); do losetup -d "$dev"; done
    rm -f "$img" "$img.new";;
  *) exit 2;;
esac
`;

/** Who owns a fresh capped filesystem's root (a uid and gid of the sandbox, numbers only). */
export interface DiskOwner {
  uid: number;
  gid: number;
}
const ROOT: DiskOwner = { uid: 0, gid: 0 };

/** What a capped volume's engine-side pieces are, from its name. */
function imageName(volume: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(volume)) throw new MoatError('E_INTERNAL', `not a volume name moat makes: ${volume}`);
  return volume;
}

export class DockerDisks {
  private support?: Promise<DiskCapSupport>;

  constructor(
    private readonly docker: Docker,
    private readonly endpoint: string,
    /** The engine shares this host's /dev (a local unix socket). */
    private readonly local: boolean,
    private readonly hostHas: (path: string) => Promise<boolean> = (path) =>
      access(path).then(
        () => true,
        () => false,
      ),
  ) {}

  /** Whether the engine can cap a workspace, and why not; asked once per engine. */
  supported(helperImage: string): Promise<DiskCapSupport> {
    this.support ??= this.probe(helperImage).catch((error: unknown) => ({
      ok: false as const,
      why: `the engine at ${this.endpoint} could not run the disk helper (${(error as Error).message.split('\n')[0]})`,
    }));
    return this.support;
  }

  private async probe(helperImage: string): Promise<DiskCapSupport> {
    const info = await this.docker.info();
    const security: string[] = info.SecurityOptions ?? [];
    if (security.some((opt) => opt.includes('rootless') || opt.includes('userns'))) {
      return { ok: false, why: `the engine at ${this.endpoint} runs in a user namespace (rootless), where loop devices cannot be attached` };
    }
    if (this.local) {
      return (await this.hostHas('/dev/loop-control'))
        ? { ok: true }
        : { ok: false, why: 'this host has no /dev/loop-control (no loop devices), so the engine cannot mount a fixed-size image' };
    }
    // A remote engine's /dev is not ours to look at: its helper tells.
    const { exitCode, stderr } = await this.run(helperImage, ['sh', '-c', 'losetup -f >/dev/null && command -v mkfs.ext4 >/dev/null']);
    if (exitCode === 0) return { ok: true };
    return {
      ok: false,
      why: `the engine at ${this.endpoint} has no usable /dev/loop-control or its base image lacks losetup/mkfs.ext4 (${stderr.trim().split('\n')[0] || `exit ${exitCode}`})`,
    };
  }

  /**
   * Makes (or finds again) the image of `volume` and its loop device, and the volume that the
   * engine mounts from it. Idempotent; a volume whose device no longer backs its image is refused
   * (it would mount someone else's filesystem) and made again when nothing uses it.
   */
  async create(volume: string, labels: Record<string, string>, cap: DiskCap, owner: DiskOwner = ROOT): Promise<void> {
    const device = await this.attach(volume, cap, owner);
    const existing = await this.docker
      .getVolume(volume)
      .inspect()
      .catch(() => undefined);
    const options = (existing as { Options?: Record<string, string> } | undefined)?.Options;
    if (existing && options?.device === device) return;
    if (existing) await this.docker.getVolume(volume).remove();
    await this.docker.createVolume({
      Name: volume,
      Driver: 'local',
      DriverOpts: { type: 'ext4', device, o: 'nosuid,nodev' },
      Labels: { ...labels, [DISK_LABEL]: String(cap.bytes) },
    });
  }

  /**
   * Before a container mounts a capped volume: its device must still back its image. After a
   * reboot, or after {@link park}, the device is gone or another image sits on its number (whose
   * filesystem would be mounted instead): the image is attached again and the volume made again
   * on the device it got (nothing mounts the volume then, or the device would still be there).
   */
  async ensure(volume: string, labels: Record<string, string>, device: string | undefined): Promise<void> {
    const bytes = Number(labels[DISK_LABEL]);
    const helperImage = labels[DISK_HELPER_LABEL];
    if (!helperImage || !(bytes > 0)) throw new MoatError('E_INTERNAL', `volume ${volume} is labelled capped but says not how`);
    const found = await this.run(helperImage, [imageName(volume)], 'find');
    if (found.exitCode === 0 && device && found.stdout.trim() === device) return;
    await this.create(volume, labels, { bytes, helperImage });
  }

  /** Detaches the loop device of a volume nothing mounts (a stopped task): its image, the work, stays; {@link ensure} attaches it again. */
  async park(volume: string, helperImage: string): Promise<void> {
    const { exitCode, stderr } = await this.run(helperImage, [imageName(volume)], 'release');
    if (exitCode !== 0)
      throw new MoatError('E_ENGINE_FAILED', `could not detach the disk of ${volume}: ${stderr.trim().split('\n')[0]}`, { hint: '`moat gc` tries again' });
  }

  /** Removes the volume, then detaches its device and deletes its image (in that order: a mounted device cannot be detached cleanly). */
  async remove(volume: string, helperImage: string): Promise<void> {
    await this.docker
      .getVolume(volume)
      .remove()
      .catch((error: unknown) => {
        if ((error as { statusCode?: number }).statusCode !== 404) throw error;
      });
    const { exitCode, stderr } = await this.run(helperImage, [imageName(volume)], 'detach');
    if (exitCode !== 0) {
      throw new MoatError('E_ENGINE_FAILED', `could not detach the disk of ${volume}: ${stderr.trim().split('\n')[0]}`, {
        hint: 'run `moat gc` again; `moat doctor` checks the engine',
      });
    }
  }

  private async attach(volume: string, cap: DiskCap, owner: DiskOwner): Promise<string> {
    // Numbers only: they go into mkfs's option list, where a comma would add an option.
    if (![owner.uid, owner.gid].every((id) => Number.isInteger(id) && id >= 0)) throw new MoatError('E_INTERNAL', `not a uid:gid: ${owner.uid}:${owner.gid}`);
    const { exitCode, stdout, stderr } = await this.run(cap.helperImage, [imageName(volume), String(cap.bytes), `${owner.uid}:${owner.gid}`], 'attach');
    const device = stdout.trim();
    if (exitCode !== 0 || !/^\/dev\/loop\d+$/.test(device)) {
      throw new MoatError('E_ENGINE_FAILED', `could not make the capped disk of ${volume}: ${stderr.trim().split('\n')[0] || `helper exited ${exitCode}`}`, {
        hint: '`moat doctor` says whether the engine can cap a workspace here',
      });
    }
    return device;
  }

  /** Runs the helper: `op` runs the script with `args`, else `args` is the command itself. */
  private async run(image: string, args: string[], op?: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    await this.ensureDisksVolume();
    const container = await this.docker.createContainer({
      Image: image,
      User: '0:0',
      Cmd: op ? ['sh', '-c', SCRIPT, 'moat-disk', op, ...args] : args,
      Labels: { [LABEL.role]: 'disk-helper' },
      NetworkDisabled: true,
      HostConfig: {
        Mounts: [{ Type: 'volume', Source: DISKS_VOLUME, Target: '/disks' }],
        CapDrop: ['ALL'],
        CapAdd: ['SYS_ADMIN', 'MKNOD'],
        Devices: [{ PathOnHost: '/dev/loop-control', PathInContainer: '/dev/loop-control', CgroupPermissions: 'rw' }],
        DeviceCgroupRules: ['b 7:* rw'],
        SecurityOpt: ['no-new-privileges:true'],
        ReadonlyRootfs: true,
        NetworkMode: 'none',
        Privileged: false,
      },
    });
    try {
      const stream = await container.attach({ stream: true, stdout: true, stderr: true });
      const out = new PassThrough();
      const err = new PassThrough();
      const chunks: Buffer[] = [];
      const errChunks: Buffer[] = [];
      out.on('data', (c: Buffer) => chunks.push(c));
      err.on('data', (c: Buffer) => errChunks.push(c));
      container.modem.demuxStream(stream, out, err);
      await container.start();
      const { StatusCode } = (await container.wait()) as { StatusCode: number };
      // The attach stream may still hold the last bytes when wait returns.
      const ended = (stream as NodeJS.ReadableStream & { readableEnded?: boolean }).readableEnded;
      await new Promise<void>((resolve) => (ended ? resolve() : stream.once('end', resolve)));
      return { exitCode: StatusCode, stdout: Buffer.concat(chunks).toString('utf8'), stderr: Buffer.concat(errChunks).toString('utf8') };
    } finally {
      await container.remove({ force: true }).catch(() => undefined);
    }
  }

  private async ensureDisksVolume(): Promise<void> {
    const found = await this.docker
      .getVolume(DISKS_VOLUME)
      .inspect()
      .catch(() => undefined);
    if (!found) await this.docker.createVolume({ Name: DISKS_VOLUME, Labels: { [LABEL.role]: 'disks' } });
  }
}
