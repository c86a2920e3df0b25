import { createServer, type Server } from 'node:http';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import type { Moat } from '../../src/index.js';
import { captureIO, eventually, gitIn, Scratch } from '../helpers/fixtures.js';

/**
 * Against an engine that shares neither moat's filesystem nor its network (scripts/setup-remote-engine.sh,
 * DOCKER_HOST=tcp://127.0.0.1:23750): nothing of moat's host is mounted into a sandbox, the
 * repository lives in an engine volume, commits come home over exec, the way out is moat's gateway.
 * Run by .ci/run's remote phase (vitest.remote.config.ts); it fails, never skips, without such an engine.
 */
describe('a remote engine', () => {
  const scratch = new Scratch();
  let moat: Moat;
  let docker: Docker;
  let upstream: Server;
  let port = 0;
  const seen: string[] = [];

  beforeAll(async () => {
    const endpoint = await findEngine();
    expect(endpoint.transport, 'DOCKER_HOST must name a remote (tcp:// or ssh://) engine').not.toBe('unix');
    docker = new Docker(connectionOptions(endpoint) as Docker.DockerOptions);
    upstream = createServer((req, res) => {
      seen.push(req.url ?? '');
      res.end(`upstream saw ${req.url}\n`);
    });
    port = await new Promise<number>((resolve) => upstream.listen(0, '127.0.0.1', () => resolve((upstream.address() as { port: number }).port)));
    scratch.writeConfig('egress:\n  allow: [127.0.0.1/32]\n');
    moat = scratch.moat();
  });
  afterAll(async () => {
    upstream.close();
    await scratch.cleanup();
  });

  it('mounts no host path into the sandbox: the workspace is an engine volume', async () => {
    const task = await moat.up({ task: 'far' });
    expect(task.workspace).toBe('volume');
    const info = await docker.getContainer(task.containerId!).inspect();
    const mounts = info.Mounts as Array<{ Type: string; Source: string; Destination: string; Name?: string }>;
    expect(mounts.filter((m) => m.Type === 'bind')).toEqual([]);
    expect(mounts.map((m) => m.Destination)).toEqual(['/workspace']);
    expect(mounts[0]).toMatchObject({ Type: 'volume', Name: `moat-${task.repoKey}-far-workspace` });
    // Nothing under the scratch (the moat home, the user's repository) appears in the container's config.
    expect(JSON.stringify(info)).not.toContain(scratch.root);
    const volume = await docker.getVolume(mounts[0]!.Name!).inspect();
    expect(volume.Labels).toMatchObject({ 'moat.task': 'far', 'moat.repo': task.repoKey });
  });

  it('seeds the repository through the engine, and commits come home over exec', async () => {
    const cap = captureIO();
    const result = await moat.exec(
      'far',
      ['sh', '-c', 'git log --format=%s; echo remote > made.txt && git add made.txt && git commit -qm "made remotely"'],
      cap.io,
    );
    expect(result.exitCode).toBe(0);
    expect(cap.out()).toContain('initial');
    expect(gitIn(scratch.repo, 'log', '--format=%s', '-1', 'moat/far')).toBe('made remotely');
    expect(gitIn(scratch.repo, 'show', 'moat/far:made.txt')).toBe('remote');
  });

  it('keeps the work across down and reset, and rm removes the volume', async () => {
    await moat.down('far');
    await moat.reset('far');
    const cap = captureIO();
    expect((await moat.exec('far', ['cat', 'made.txt'], cap.io)).exitCode).toBe(0);
    expect(cap.out().trim()).toBe('remote');
    const task = (await moat.ls()).find((t) => t.name === 'far')!;
    expect(task.disk).toMatch(/^NOT capped: /);
    expect(task.limits.diskBytes).toBeUndefined();
    await moat.rm('far', { force: true });
    expect((await docker.listVolumes({ filters: { label: ['moat.task=far'] } })).Volumes ?? []).toEqual([]);
  });

  it('reaches the network only through moat gateway, over the exec bridge, audited', async () => {
    await moat.up({ task: 'net', network: 'allowlist' });
    const info = await docker.getContainer((await moat.ls()).find((t) => t.name === 'net')!.containerId!).inspect();
    expect(info.HostConfig.NetworkMode).toBe('none');
    const cap = captureIO();
    const script = `for i in 1 2 3; do curl --noproxy '' -sS -m 20 http://127.0.0.1:${port}/hello$i || exit 1; done; curl -sS -m 20 -o /dev/null -w '%{http_code}\\n' http://denied.invalid/ ; exit 0`;
    expect((await moat.exec('net', ['sh', '-c', script], cap.io, { sync: false })).exitCode).toBe(0);
    expect(cap.out()).toContain('upstream saw /hello3');
    expect(cap.out()).toMatch(/\n403\n?$/);
    expect(seen).toEqual(['/hello1', '/hello2', '/hello3']);
    // An allowed connection is logged when it closes, a moment after its client is done.
    const audit = await eventually(
      () => moat.egress('net'),
      (a) => a.filter((r) => r.decision === 'allowed').length >= 3,
    );
    expect(audit.filter((a) => a.decision === 'allowed').length).toBeGreaterThanOrEqual(3);
    expect(audit.some((a) => a.decision === 'denied' && a.host === 'denied.invalid')).toBe(true);
    // moat-why reads the bridge's copy of the denials file (it follows the gateway's within a poll).
    const why = captureIO();
    const wait = "for i in $(seq 1 50); do moat-why | grep -q 'for denied.invalid:80' && break; sleep 0.1; done; moat-why";
    await moat.exec('net', ['sh', '-c', wait], why.io, { sync: false });
    expect(why.out()).toMatch(
      / GET \/ moat: egress denied \(not in allowlist: denied\.invalid\) for denied\.invalid:80\. If the task needs it, ask the user to run: moat allow net denied\.invalid\.\n/,
    );
    await moat.rm('net', { force: true });
  });
});
