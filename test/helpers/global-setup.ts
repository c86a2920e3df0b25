import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { serverProcesses } from './fixtures.js';

/**
 * Integration tests need the real engine: in CI an unreachable engine fails the run, it never
 * skips. After the suite, any container, network or volume labelled by moat is a leak
 * and fails the run too (the check covers every resource labelled moat.task).
 */
/** Resources that existed before the suite (a user's own tasks) are not the suite's leaks. */
const before = new Set<string>();

export async function setup(): Promise<void> {
  const endpoint = await findEngine();
  const docker = new Docker(connectionOptions(endpoint) as Docker.DockerOptions);
  await docker.ping();
  const filters = { label: ['moat.task'] };
  for (const c of await docker.listContainers({ all: true, filters })) before.add(c.Id);
  for (const n of await docker.listNetworks({ filters })) before.add(n.Id);
  for (const v of (await docker.listVolumes({ filters })).Volumes ?? []) before.add(v.Name);
}

export async function teardown(): Promise<void> {
  const endpoint = await findEngine();
  const docker = new Docker(connectionOptions(endpoint) as Docker.DockerOptions);
  const filters = { label: ['moat.task'] };
  const containers = (await docker.listContainers({ all: true, filters })).filter((c) => !before.has(c.Id));
  const networks = (await docker.listNetworks({ filters })).filter((n) => !before.has(n.Id));
  const volumes = ((await docker.listVolumes({ filters })).Volumes ?? []).filter((v) => !before.has(v.Name));
  const leftovers = [
    ...containers.map((c) => `container ${c.Names[0]}`),
    ...networks.map((n) => `network ${n.Name}`),
    ...volumes.map((v) => `volume ${v.Name}`),
  ];
  // CLI servers a test started (their sockets are under a scratch root) must be gone too.
  for (const server of testServers()) {
    leftovers.push(`CLI server pid ${server}`);
    try {
      process.kill(server, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  if (leftovers.length > 0) {
    await Promise.all(
      containers.map((c) =>
        docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined),
      ),
    );
    throw new Error(`tests left labelled resources behind: ${leftovers.join(', ')}`);
  }
}

function testServers(): number[] {
  return serverProcesses(join(tmpdir(), 'moat-test-'));
}
