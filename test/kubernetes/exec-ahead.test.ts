import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { CoreV1Api } from '@kubernetes/client-node';
import { isMoatError, Moat } from '../../src/index.js';
import { TaskPool } from '../../src/service/task-pool.js';
import { captureIO } from '../helpers/fixtures.js';
import { ADMIN_KUBECONFIG, KUBECTL } from '../helpers/kubernetes.js';
import { clusterFixture, NO_NETWORK_CONFIG } from '../helpers/cluster-fixture.js';
import { setSpareGate } from '../../src/engine/background-gate.js';

/**
 * An exec opened ahead into a pool's spare (kubernetes-exec-ahead.ts): the claim's command runs in
 * the shell that waited in the spare, with everything its own exec would have given it (user,
 * working directory, environment, exit status); a task made for the request itself, and every
 * command after the claim, open their own exec; MOAT_K8S_EXEC_AHEAD=off opens none.
 */

/**
 * Prints "under-wait" for each ancestor that is a waiting shell (its cmdline names moat-wait; the
 * bracket keeps this script's own words from matching), then what the command sees, and exits 3.
 */
const PROBE = [
  'sh',
  '-c',
  'p=$PPID; while [ "${p:-0}" -gt 1 ]; do if tr "\\000" " " </proc/$p/cmdline | grep -q "moat-wai[t]"; then echo under-wait; fi; p=$(sed -n "s/^PPid:[[:space:]]*//p" /proc/$p/status); done; echo "uid=$(id -u) cwd=$(pwd) home=$HOME path=$PATH nofile=$(ulimit -n)"; echo err-tail >&2; exit 3',
];

const run = promisify(execFile);

/** The first pod of the selector whose sandbox container runs, as its node reports it. */
async function runningPod(core: CoreV1Api, namespace: string, labelSelector: string): Promise<string> {
  for (let waited = 0; waited < 120_000; waited += 200) {
    const pods = await core.listNamespacedPod({ namespace, labelSelector });
    const running = pods.items.find((pod) => pod.status?.containerStatuses?.some((c) => c.name === 'sandbox' && c.state?.running));
    if (running) return running.metadata!.name!;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`no pod of ${labelSelector} runs`);
}

/** How many waiting shells (moat-wait) run in the pod's sandbox, asked through kubectl's own exec. */
async function waitingShells(namespace: string, pod: string): Promise<number> {
  const script = 'n=0; for f in /proc/[0-9]*/cmdline; do if tr "\\000" " " <"$f" 2>/dev/null | grep -q "moat-wai[t]"; then n=$((n+1)); fi; done; echo $n';
  const { stdout } = await run(KUBECTL, ['--kubeconfig', ADMIN_KUBECONFIG, '-n', namespace, 'exec', pod, '-c', 'sandbox', '--', 'sh', '-c', script]);
  return Number(stdout.trim());
}

async function waitForSpare(pool: TaskPool): Promise<void> {
  pool.makeWanted();
  for (let waited = 0; pool.readyCount() === 0 && waited < 120_000; waited += 200) await new Promise((resolve) => setTimeout(resolve, 200));
  expect(pool.readyCount()).toBe(1);
}

describe('moat on Kubernetes: an exec opened ahead into a spare', () => {
  // The pool's shape: no network, no keys.
  const cluster = clusterFixture(NO_NETWORK_CONFIG);
  const pools: TaskPool[] = [];
  // Before the fixture's removal of the namespace (after-hooks run as a stack).
  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.close().catch(() => undefined)));
  });

  const pooled = (env: Record<string, string> = {}) => {
    const pool = new TaskPool(4, 1);
    pools.push(pool);
    return { pool, moat: () => new Moat({ cwd: cluster.scratch.repo, env: cluster.scratch.env({ MOAT_POOL: '1', ...env }), pool }) };
  };
  const probe = async (moat: Moat) => {
    const cap = captureIO();
    const result = await moat.run(PROBE, cap.io);
    return { code: result.exitCode, out: cap.out(), err: cap.err() };
  };

  it("runs the claim's command in the spare's waiting exec, exactly as its own exec would, and opens no other", { timeout: 300_000 }, async () => {
    const { pool, moat } = pooled();
    // The first request finds no spare: its own task, its own exec; it asks for a spare.
    const own = await probe(moat());
    expect(own.code).toBe(3);
    expect(own.out).not.toContain('under-wait');
    expect(own.out).toMatch(/^uid=\d+ cwd=\/workspace home=\/home\/agent path=\S+ nofile=\d+\n$/);
    expect(own.err).toBe('err-tail\n');

    await waitForSpare(pool);
    // The spare's pod says what it is (the pool's label), and only the spare's.
    const pods = await cluster.ns.core.listNamespacedPod({ namespace: cluster.ns.name });
    expect(pods.items.map((pod) => pod.metadata?.labels?.['moat.made-ahead'])).toEqual(['true']);

    const claim = await probe(moat());
    // The status came in-band (kubernetes-exec-status.ts): neither channel shows its line, nor lost its tail.
    expect(claim.code).toBe(3);
    expect(claim.err).toBe('err-tail\n');
    // One waiting shell above the command: the spare's; the rest as through its own exec.
    expect(claim.out).toBe(`under-wait\n${own.out}`);

    // After the claim, the task's commands open their own: `up` takes the next spare, its first
    // command the waiting exec, the second its own.
    await waitForSpare(pool);
    const client = moat();
    const task = await client.up();
    const first = captureIO();
    const second = captureIO();
    expect((await client.exec(task.name, PROBE, first.io, { sync: false })).exitCode).toBe(3);
    expect((await client.exec(task.name, PROBE, second.io, { sync: false })).exitCode).toBe(3);
    expect(first.out()).toBe(`under-wait\n${own.out}`);
    expect(second.out()).toBe(own.out);
    await client.rm(task.name, { force: true });
  });

  it(
    "a spare's pod deleted mid-command (the claim's, in the waiting exec): E_ENGINE_FAILED; deleted before it: not running",
    { timeout: 300_000 },
    async () => {
      const { pool, moat } = pooled();
      expect((await probe(moat())).code).toBe(3);
      const podOf = async (task: string) =>
        (await cluster.ns.core.listNamespacedPod({ namespace: cluster.ns.name, labelSelector: `moat.task=${task}` })).items[0]!;

      await waitForSpare(pool);
      const client = moat();
      const task = await client.up();
      const cap = captureIO();
      const running = client.exec(task.name, ['sh', '-c', 'echo started; sleep 170'], cap.io, { sync: false }).then(
        (result) => result,
        (e: unknown) => e,
      );
      for (let i = 0; i < 300 && !cap.out().includes('started'); i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(cap.out()).toBe('started\n');
      const pod = await podOf(task.name);
      await cluster.ns.core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace: cluster.ns.name });
      const error = await running;
      expect(isMoatError(error)).toBe(true);
      expect(error).toMatchObject({ code: 'E_ENGINE_FAILED', exitCode: 4, details: { podEnd: 'deleted' } });
      await client.rm(task.name, { force: true });

      // A claimed pod gone before its first command: the waiting exec is not used, the task is not running.
      await waitForSpare(pool);
      const gone = await client.up();
      await cluster.ns.core.deleteNamespacedPod({ name: (await podOf(gone.name)).metadata!.name!, namespace: cluster.ns.name, gracePeriodSeconds: 0 });
      const refused = await client.exec(gone.name, ['true'], captureIO().io, { sync: false }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(refused).toMatchObject({ code: 'E_TASK_NOT_RUNNING', exitCode: 7 });
      await client.rm(gone.name, { force: true });
    },
  );

  it('MOAT_K8S_EXEC_AHEAD=off: the claim opens its own exec', { timeout: 300_000 }, async () => {
    const { pool, moat } = pooled({ MOAT_K8S_EXEC_AHEAD: 'off' });
    expect((await probe(moat())).code).toBe(3);
    await waitForSpare(pool);
    const claim = await probe(moat());
    expect(claim.code).toBe(3);
    expect(claim.out).toMatch(/^uid=\d+ cwd=\/workspace home=\/home\/agent path=\S+ nofile=\d+\n$/);
  });

  it(
    "a spare's engine steps (the proof of its start, the exec opened ahead) wait for the spare gate, as the warm server shuts it while it serves a command; another pod's do not",
    { timeout: 300_000 },
    async () => {
      const { pool, moat } = pooled();
      expect((await probe(moat())).code).toBe(3);
      let open: () => void = () => undefined;
      const shut = new Promise<void>((resolve) => (open = resolve));
      setSpareGate(() => shut);
      let pod: string | undefined;
      try {
        pool.makeWanted();
        // The spare's pod runs (its node says so), and no shell waits in it while the gate is shut.
        pod = await runningPod(cluster.ns.core, cluster.ns.name, 'moat.made-ahead=true');
        await new Promise((resolve) => setTimeout(resolve, 1500));
        expect(await waitingShells(cluster.ns.name, pod)).toBe(0);
        // A task of its own (no pool) is no spare: it starts and runs commands, gate or not.
        const own = cluster.scratch.moat({ env: { MOAT_POOL: 'off' } });
        const task = await own.up();
        expect((await own.exec(task.name, PROBE, captureIO().io, { sync: false })).exitCode).toBe(3);
        await own.rm(task.name, { force: true });
        expect(await waitingShells(cluster.ns.name, pod)).toBe(0);
      } finally {
        open();
        setSpareGate(undefined);
      }
      // Once open, the spare is made to the end: a shell waits in it, and the claim runs there.
      await waitForSpare(pool);
      for (let i = 0; i < 150 && (await waitingShells(cluster.ns.name, pod!)) !== 1; i += 1) await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await waitingShells(cluster.ns.name, pod!)).toBe(1);
      expect((await probe(moat())).out).toMatch(/^under-wait\n/);
    },
  );

  it('refuses a MOAT_K8S_EXEC_AHEAD it does not know, in one line with a hint', async () => {
    const error = await cluster.scratch
      .moat({ env: { MOAT_K8S_EXEC_AHEAD: 'sometimes' } })
      .ls()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ code: 'E_CONFIG_INVALID', hint: expect.stringMatching(/spares/) });
    expect((error as Error).message).toMatch(/^MOAT_K8S_EXEC_AHEAD=sometimes is none of spares, on, off$/);
  });
});
