import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { workspaceVolume } from '../../src/service/task-container.js';
import type { TaskRecord } from '../../src/domain/task.js';
import { captureIO, gitIn, MOAT_COMMAND, Scratch } from '../helpers/fixtures.js';

/**
 * The workspace cap the engine makes (src/engine/docker-disk.ts), for a user who is not root: CI
 * runs this file as `moatci`, a member of the docker group (scripts/test-user.sh). As root,
 * MOAT_DISK=engine makes moat choose the same path, so the file proves the same there.
 */
describe('disk cap made by the engine', () => {
  const scratch = new Scratch();
  let docker: Docker;
  beforeAll(async () => {
    docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
    scratch.writeConfig('limits:\n  disk: 64m\n');
  });
  afterAll(() => scratch.cleanup());

  const moat = () => scratch.moat({ env: { MOAT_DISK: 'engine' } });

  /** The loop device a capped volume names, and whether the kernel still has it attached to the volume's image. */
  async function deviceOf(record: TaskRecord): Promise<string> {
    const volume = (await docker.getVolume(workspaceVolume(record)).inspect()) as { Options?: Record<string, string> };
    return volume.Options!.device!;
  }
  function attached(device: string, record: TaskRecord): boolean {
    const file = `/sys/block/${device.replace('/dev/', '')}/loop/backing_file`;
    return existsSync(file) && readFileSync(file, 'utf8').includes(`${workspaceVolume(record)}.img`);
  }
  /** Bytes the volume's image takes on the engine's disk (a root-less user reads it through a container). */
  async function imageBytes(record: TaskRecord): Promise<number> {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const [result] = (await docker.run('moat-base:bookworm', ['stat', '-c', '%b %B', `/disks/${workspaceVolume(record)}.img`], out, {
      HostConfig: { AutoRemove: true, NetworkMode: 'none', Mounts: [{ Type: 'volume', Source: 'moat-disks', Target: '/disks', ReadOnly: true }] },
    })) as [{ StatusCode: number }];
    expect(result.StatusCode).toBe(0);
    const [blocks, size] = text.trim().split(' ').map(Number);
    return blocks! * size!;
  }
  /** Whether the volume's disk image is still in the engine's `moat-disks` volume. */
  async function imageExists(record: TaskRecord): Promise<boolean> {
    const [result] = (await docker.run('moat-base:bookworm', ['test', '-e', `/disks/${workspaceVolume(record)}.img`], new PassThrough(), {
      HostConfig: { AutoRemove: true, NetworkMode: 'none', Mounts: [{ Type: 'volume', Source: 'moat-disks', Target: '/disks', ReadOnly: true }] },
    })) as [{ StatusCode: number }];
    return result.StatusCode === 0;
  }
  /** What of this home the engine still holds, by label. */
  async function leftOver(m: ReturnType<typeof moat>): Promise<string[]> {
    const filters = { label: [`moat.home=${m.context.store.homeKey}`] };
    const containers = await docker.listContainers({ all: true, filters });
    const volumes = (await docker.listVolumes({ filters })).Volumes ?? [];
    return [...containers.map((c) => c.Names[0]!), ...volumes.map((v) => v.Name)];
  }
  async function volumeExists(record: TaskRecord): Promise<boolean> {
    return docker
      .getVolume(workspaceVolume(record))
      .inspect()
      .then(
        () => true,
        () => false,
      );
  }

  it('writing past the cap fails with ENOSPC inside, the host is untouched, and a commit reaches the host repository', async () => {
    const m = moat();
    const record = await m.up({ task: 'filler' });
    expect(record.disk).toBe('engine');
    expect(record.workspace).toBe('volume');
    const [row] = await m.ls();
    expect(row!.disk).toMatch(/^capped at 64/);
    expect(row!.limits.diskBytes).toBe(64 * 1024 * 1024);
    expect((await m.doctor()).enforcement.disk).toMatch(/^kernel: /);
    await m.exec('filler', ['sh', '-c', 'echo keep > keep.txt && git add keep.txt && git commit -qm kept'], captureIO().io);
    const cap = captureIO();
    const result = await m.exec('filler', ['sh', '-c', 'dd if=/dev/urandom of=fill.bin bs=1M count=200 2>&1; df -k /workspace | tail -1'], cap.io, {
      sync: false,
    });
    expect(cap.out()).toMatch(/No space left on device/);
    expect(result.exitCode).toBe(0);
    // The engine's disk lost no more than the cap: the image's allocated blocks, as the engine's host sees them.
    expect(await imageBytes(record)).toBeLessThanOrEqual(64 * 1024 * 1024);
    const [stats] = await m.stats('filler');
    expect(stats!.diskCapBytes).toBe(64 * 1024 * 1024);
    // A full volume: the snapshot of uncommitted work cannot be written there, the commit still comes home.
    const full = await m.sync('filler');
    expect(full.commits).toBe(1);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/filler')).toBe('kept');
    await m.exec('filler', ['rm', '-f', 'fill.bin'], captureIO().io, { sync: false });
    expect((await m.sync('filler')).commits).toBe(1);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/filler')).toBe('kept');
    const device = await deviceOf(record);
    expect(attached(device, record)).toBe(true);
    await m.rm('filler', { force: true });
    expect(await volumeExists(record)).toBe(false);
    expect(attached(device, record)).toBe(false);
  });

  it('down detaches the device and keeps the work; the next container attaches it again', async () => {
    const m = moat();
    const record = await m.up({ task: 'parked' });
    await m.exec('parked', ['sh', '-c', 'echo draft > draft.txt'], captureIO().io, { sync: false });
    const device = await deviceOf(record);
    await m.down('parked');
    expect(attached(device, record)).toBe(false);
    expect(await volumeExists(record)).toBe(true);
    await m.reset('parked');
    const cap = captureIO();
    await m.exec('parked', ['cat', 'draft.txt'], cap.io, { sync: false });
    expect(cap.out()).toContain('draft');
    expect(attached(await deviceOf(record), record)).toBe(true);
    await m.rm('parked', { force: true });
    expect(await volumeExists(record)).toBe(false);
  });

  it('gc removes the volume and detaches the device of a task whose record is gone', async () => {
    const m = moat();
    const record = await m.up({ task: 'lost' });
    const device = await deviceOf(record);
    // As after a kill -9 half-way: the engine's resources outlive moat's record.
    await docker.getContainer(record.containerId!).remove({ force: true });
    await m.context.store.remove(record.repoKey, 'lost');
    const result = await m.gc();
    expect(result.removedVolumes).toContain(workspaceVolume(record));
    expect(await volumeExists(record)).toBe(false);
    expect(attached(device, record)).toBe(false);
  });
  it('gc removes the disk of a task whose up was killed after attaching it, before its volume was made', async () => {
    const m = moat();
    const record = await m.up({ task: 'early' });
    const device = await deviceOf(record);
    // As moat killed between DockerDisks.attach and the volume's creation: the image and its
    // device on the engine, no container, no volume to name them, the record still "creating".
    await docker.getContainer(record.containerId!).remove({ force: true });
    await docker.getVolume(workspaceVolume(record)).remove();
    expect(attached(device, record)).toBe(true);
    const dead = await new Promise<number>((resolve) => {
      const child = spawn('true');
      child.on('exit', () => resolve(child.pid!));
    });
    await m.context.store.save({ ...record, state: 'creating', creatorPid: dead, containerId: undefined });
    // Another moat process (a fresh one: nothing remembered of the attach), as after a kill.
    const result = await moat().gc();
    expect(result.removedTasks).toEqual(['early']);
    expect(attached(device, record)).toBe(false);
    expect(await imageExists(record)).toBe(false);
    expect(await leftOver(m)).toEqual([]);
    expect(gitIn(scratch.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/early')).toBe('');
  });

  it('kill -9 of moat while it seeds a capped volume: gc removes the half-copied workspace, its disk and the record', async () => {
    const m = moat();
    const child = spawn(MOAT_COMMAND, ['up', '--task', 'halfway'], {
      cwd: scratch.repo,
      env: scratch.env({ MOAT_DISK: 'engine', MOAT_POOL: 'off', MOAT_TEST_KILL_AT: 'seed-mid-bundle' }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    expect(signal, stderr).toBe('SIGKILL');
    const record = (await m.context.store.listAll()).find((r) => r.name === 'halfway')!;
    expect(record).toMatchObject({ state: 'creating', disk: 'engine', workspace: 'volume' });
    // The sandbox got half of the bundle: the volume holds a repository that is not one yet.
    expect(await volumeExists(record)).toBe(true);
    expect(await imageExists(record)).toBe(true);
    const result = await m.gc();
    expect(result.removedTasks).toEqual(['halfway']);
    expect(await volumeExists(record)).toBe(false);
    expect(await imageExists(record)).toBe(false);
    expect(await leftOver(m)).toEqual([]);
    expect(await m.context.store.get(record.repoKey, 'halfway')).toBeUndefined();
    // The name is free again, and the next up makes a whole workspace.
    await m.up({ task: 'halfway' });
    const cap = captureIO();
    expect((await m.exec('halfway', ['git', 'log', '--format=%s'], cap.io, { sync: false })).exitCode).toBe(0);
    expect(cap.out().trim()).toBe('initial');
    await m.rm('halfway', { force: true });
  });
});
