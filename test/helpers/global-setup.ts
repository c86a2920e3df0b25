import Docker from 'dockerode';
import { findEngine } from '../../src/engine/find-engine.js';

/**
 * Integration tests need the real engine: in CI an unreachable engine fails the run, it never
 * skips. After the suite, any container, network or volume labelled by moat is a leak
 * and fails the run too (the check covers every resource labelled moat.task).
 */
export async function setup(): Promise<void> {
  const endpoint = await findEngine();
  await new Docker({ socketPath: endpoint.socketPath }).ping();
}

export async function teardown(): Promise<void> {
  const endpoint = await findEngine();
  const docker = new Docker({ socketPath: endpoint.socketPath });
  const filters = { label: ['moat.task'] };
  const containers = await docker.listContainers({ all: true, filters });
  const networks = await docker.listNetworks({ filters });
  const volumes = (await docker.listVolumes({ filters })).Volumes ?? [];
  const leftovers = [...containers.map((c) => `container ${c.Names[0]}`), ...networks.map((n) => `network ${n.Name}`), ...volumes.map((v) => `volume ${v.Name}`)];
  if (leftovers.length > 0) {
    await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    throw new Error(`tests left labelled resources behind: ${leftovers.join(', ')}`);
  }
}
