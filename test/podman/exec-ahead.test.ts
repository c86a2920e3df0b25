import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Moat } from '../../src/index.js';
import { openEngine } from '../../src/engine/open-engine.js';
import { PodmanEngine } from '../../src/engine/podman-engine.js';
import { TaskPool } from '../../src/service/task-pool.js';
import { captureIO, Scratch } from '../helpers/fixtures.js';

/**
 * An exec opened ahead into a pool's spare on Podman (podman-exec-ahead.ts), rootful or rootless
 * (whichever MOAT_ENGINE_SOCKET names): the claim's first command runs in the shell that waited in
 * the spare, with everything its own exec would have given it (user, working directory,
 * environment, stdin, exit status); the next command opens its own; a waiting shell killed before
 * the claim leaves the claim to its own exec; MOAT_PODMAN_EXEC_AHEAD=off opens none.
 */

/**
 * Prints "under-wait" for each ancestor that is a waiting shell (its cmdline names moat-wait; the
 * bracket keeps this script's own words from matching), then what the command sees (its stdin
 * too), and exits 3.
 */
const PROBE = [
  'sh',
  '-c',
  'p=$PPID; while [ "${p:-0}" -gt 1 ]; do if tr "\\000" " " </proc/$p/cmdline | grep -q "moat-wai[t]"; then echo under-wait; fi; p=$(sed -n "s/^PPid:[[:space:]]*//p" /proc/$p/status); done; echo "uid=$(id -u) cwd=$(pwd) home=$HOME greeting=${GREETING:-none} nofile=$(ulimit -n) stdin=$(cat)"; echo err-tail >&2; exit 3',
];

async function waitForSpare(pool: TaskPool): Promise<void> {
  pool.makeWanted();
  for (let waited = 0; pool.readyCount() === 0 && waited < 120_000; waited += 200) await new Promise((resolve) => setTimeout(resolve, 200));
  expect(pool.readyCount()).toBe(1);
}

describe('moat on Podman: an exec opened ahead into a spare', () => {
  const scratch = new Scratch();
  const pools: TaskPool[] = [];
  const podman = new Docker({ socketPath: process.env.MOAT_ENGINE_SOCKET ?? '/run/podman/podman.sock' });

  beforeAll(async () => {
    const engine = await openEngine(scratch.env());
    expect(engine).toBeInstanceOf(PodmanEngine);
    // The pool's shape: no network, no keys; rootless on cgroup v1 must accept its stated gap.
    const gap = (await engine.limitEnforcement!()).unenforced;
    scratch.writeConfig(`network: none\n${gap.length > 0 ? `acceptUnenforcedLimits: [${gap.join(', ')}]\n` : ''}`);
  });
  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.close().catch(() => undefined)));
    scratch.cleanup();
  });

  const pooled = (env: Record<string, string> = {}) => {
    const pool = new TaskPool(4, 1);
    pools.push(pool);
    return { pool, moat: () => new Moat({ cwd: scratch.repo, env: scratch.env({ MOAT_POOL: '1', ...env }), pool }) };
  };
  const probe = async (moat: Moat, task: string) => {
    const cap = captureIO('from stdin');
    const result = await moat.exec(task, PROBE, cap.io, { sync: false, env: { GREETING: "it's me" } });
    return { code: result.exitCode, out: cap.out(), err: cap.err() };
  };
  /** A first request (its own task, removed): the pool learns what to make ahead. */
  const prime = async (client: Moat) => {
    const task = await client.up();
    await client.rm(task.name, { force: true });
  };
  /** The spare's container (the pool's label), as Podman lists it. */
  const spare = async () => {
    const list = await podman.listContainers({ filters: { label: ['moat.made-ahead=true'] } });
    expect(list).toHaveLength(1);
    return list[0]!.Id;
  };

  it("runs the claim's first command in the spare's waiting exec, exactly as its own exec would; the next opens its own", { timeout: 300_000 }, async () => {
    const { pool, moat } = pooled();
    // A task made for the request itself: its commands open their own exec.
    const client = moat();
    const own = await client.up();
    const expected = await probe(client, own.name);
    expect(expected.code).toBe(3);
    expect(expected.out).toMatch(/^uid=\d+ cwd=\/workspace home=\/home\/agent greeting=it's me nofile=\d+ stdin=from stdin\n$/);
    expect(expected.err).toBe('err-tail\n');
    await client.rm(own.name, { force: true });

    await waitForSpare(pool);
    await spare();
    const task = await client.up();
    const first = await probe(client, task.name);
    const second = await probe(client, task.name);
    // The status came in-band: neither channel shows its line, nor lost its tail.
    expect(first.code).toBe(3);
    expect(first.err).toBe('err-tail\n');
    // One waiting shell above the command: the spare's; the rest as through its own exec.
    expect(first.out).toBe(`under-wait\n${expected.out}`);
    expect(second).toEqual(expected);
    // Status 0 and a command with no stdin, in the next spare's waiting exec.
    await waitForSpare(pool);
    const next = await client.up();
    const quiet = captureIO();
    expect((await client.exec(next.name, ['sh', '-c', 'cat; echo ok'], quiet.io, { sync: false })).exitCode).toBe(0);
    expect(quiet.out()).toBe('ok\n');
    await client.rm(task.name, { force: true });
    await client.rm(next.name, { force: true });
    await pool.close();
  });

  it('a waiting shell killed before the claim: the claim opens its own exec, with the same result', { timeout: 300_000 }, async () => {
    const { pool, moat } = pooled();
    const client = moat();
    await prime(client);
    await waitForSpare(pool);
    const id = await spare();
    const { Config } = await podman.getContainer(id).inspect();
    // Killed from inside the container (its own exec, not moat's), as the sandbox itself could.
    const killer = await podman.getContainer(id).exec({
      Cmd: ['sh', '-c', 'for c in /proc/[0-9]*/cmdline; do if tr "\\000" " " <$c | grep -q "moat-wai[t]"; then p=${c#/proc/}; kill -9 ${p%/cmdline}; fi; done'],
      User: Config.User,
      AttachStdout: true,
      AttachStderr: true,
    });
    const stream = await killer.start({ hijack: true, stdin: false });
    await new Promise((resolve) => stream.on('end', resolve));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const task = await client.up();
    const result = await probe(client, task.name);
    expect(result.code).toBe(3);
    expect(result.out).toMatch(/^uid=\d+ cwd=\/workspace home=\/home\/agent greeting=it's me nofile=\d+ stdin=from stdin\n$/);
    expect(result.err).toBe('err-tail\n');
    await client.rm(task.name, { force: true });
    await pool.close();
  });

  it('MOAT_PODMAN_EXEC_AHEAD=off: the claim opens its own exec', { timeout: 300_000 }, async () => {
    const { pool, moat } = pooled({ MOAT_PODMAN_EXEC_AHEAD: 'off' });
    const client = moat();
    await prime(client);
    await waitForSpare(pool);
    const task = await client.up();
    const result = await probe(client, task.name);
    expect(result.code).toBe(3);
    expect(result.out).toMatch(/^uid=\d+ cwd=\/workspace home=\/home\/agent greeting=it's me nofile=\d+ stdin=from stdin\n$/);
    await client.rm(task.name, { force: true });
    await pool.close();
  });

  it('refuses a MOAT_PODMAN_EXEC_AHEAD it does not know, in one line with a hint (exit 3)', async () => {
    const error = await scratch
      .moat({ env: { MOAT_PODMAN_EXEC_AHEAD: 'sometimes' } })
      .ls()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ code: 'E_CONFIG_INVALID', exitCode: 3, hint: expect.stringMatching(/spares/) });
    expect((error as Error).message).toBe('MOAT_PODMAN_EXEC_AHEAD=sometimes is neither spares nor off');
  });
});
