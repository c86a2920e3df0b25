import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { runHomesFile, serverProcesses } from './fixtures.js';

/**
 * Integration tests need the real engine: in CI an unreachable engine fails the run, it never
 * skips. After the suite, any container, network or volume labelled by moat is a leak
 * and fails the run too (the check covers every resource labelled moat.task).
 */
/** Resources that existed before the suite (a user's own tasks) are not the suite's leaks. */
const before = new Set<string>();
/** This run's id, for the workers (fixtures.ts TEST_RUN); another suite running meanwhile has its own. */
const run = randomBytes(6).toString('hex');

export async function setup(): Promise<void> {
  process.env.MOAT_TEST_RUN = run;
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
  // Ours: made since setup, by a home of this run's scratches, or with no home at all (what a test
  // labels itself); never the tasks of another suite running on the same engine meanwhile.
  const homes = new Set(readHomes());
  rmSync(runHomesFile(run), { force: true });
  const ours = (id: string, labels: Record<string, string> | undefined) => !before.has(id) && (!labels?.['moat.home'] || homes.has(labels['moat.home']));
  const containers = (await docker.listContainers({ all: true, filters })).filter((c) => ours(c.Id, c.Labels));
  const networks = (await docker.listNetworks({ filters })).filter((n) => ours(n.Id, n.Labels));
  const volumes = ((await docker.listVolumes({ filters })).Volumes ?? []).filter((v) => ours(v.Name, v.Labels));
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
  return serverProcesses(join(tmpdir(), `moat-test-${run}-`));
}

function readHomes(): string[] {
  try {
    return readFileSync(runHomesFile(run), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}
