import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { untilPodEnds } from '../../src/engine/kubernetes-exec.js';
import { podEnd, podEndError } from '../../src/engine/kubernetes-watch.js';

const running: V1Pod = {
  metadata: { name: 'p' },
  status: { phase: 'Running', containerStatuses: [{ name: 'sandbox', ready: true, restartCount: 0, image: 'i', imageID: '', state: { running: {} } }] },
};

describe("a pod's end, as commands in it hear it", () => {
  it('tells evicted (with the kubelet message), deleted and failed apart, and a running pod from all three', () => {
    expect(podEnd(running)).toBeUndefined();
    expect(podEnd(undefined)).toEqual({ reason: 'deleted', message: '' });
    expect(podEnd({ ...running, metadata: { name: 'p', deletionTimestamp: new Date() } })).toEqual({ reason: 'deleted', message: '' });
    // The kubelet marks an evicted pod Failed as well: the eviction is what is said.
    expect(
      podEnd({ ...running, status: { phase: 'Failed', reason: 'Evicted', message: 'Usage of EmptyDir volume "workspace" exceeds\nthe limit "64Mi". ' } }),
    ).toEqual({ reason: 'evicted', message: 'Usage of EmptyDir volume "workspace" exceeds the limit "64Mi".' });
    expect(podEnd({ ...running, status: { phase: 'Failed', reason: 'NodeLost', message: 'gone' } })).toEqual({ reason: 'failed', message: 'NodeLost: gone' });
    const ended = structuredClone(running);
    ended.status!.containerStatuses![0]!.state = { terminated: { exitCode: 137, reason: 'OOMKilled' } };
    expect(podEnd(ended)).toEqual({ reason: 'failed', message: 'its sandbox container ended (OOMKilled 137)' });
  });

  it('says each end in one line, with a hint that fits it and exit code 4', () => {
    const disk = podEndError('p', { reason: 'evicted', message: 'Usage of EmptyDir volume "workspace" exceeds the limit "64Mi".' });
    expect(disk).toMatchObject({ code: 'E_ENGINE_FAILED', exitCode: 4, details: { pod: 'p', podEnd: 'evicted' } });
    expect(disk.message).toBe('pod p was evicted by its node: Usage of EmptyDir volume "workspace" exceeds the limit "64Mi".');
    expect(disk.hint).toMatch(/limits\.disk/);
    expect(podEndError('p', { reason: 'evicted', message: 'The node was low on resource: memory.' }).hint).not.toMatch(/limits\.disk/);
    const deleted = podEndError('p', { reason: 'deleted', message: '' });
    expect(deleted.message).toBe('pod p was deleted while the command ran');
    expect(deleted.hint).toMatch(/moat reset TASK.*commits synced before/);
    expect(podEndError('p', { reason: 'failed', message: 'NodeLost: gone' }).message).toBe('pod p ended while the command ran: NodeLost: gone');
    // Ended before the command could run: "not running" (409), which the task layer says as E_TASK_NOT_RUNNING.
    const before = podEndError('p', { reason: 'evicted', message: 'Usage of EmptyDir volume "workspace" exceeds the limit "64Mi".', already: true });
    expect(before.message).toBe('pod p is not running (evicted: Usage of EmptyDir volume "workspace" exceeds the limit "64Mi".)');
    expect(before).toMatchObject({ cause: { statusCode: 409 }, hint: 'moat reset TASK makes a new one' });
  });
});

describe('a command ends with its pod', () => {
  const socket = () => {
    const made = { terminated: false, terminate: () => (made.terminated = true) };
    return made;
  };
  const never = new Promise<never>(() => undefined);
  const after = <T>(ms: number, value: T) => new Promise<T>((resolve) => setTimeout(() => resolve(value), ms));

  it("keeps the command's own status when it comes first", async () => {
    const s = socket();
    await expect(untilPodEnds(s as unknown as WebSocket, Promise.resolve(3), never)).resolves.toBe(3);
    expect(s.terminated).toBe(false);
  });

  it("ends a stream the kubelet never closes with the pod's end, and closes it", async () => {
    const s = socket();
    let settle: (code: number) => void = () => undefined;
    const finished = new Promise<number>((resolve) => (settle = resolve));
    const ended = after(10, new Error('pod p was deleted while the command ran'));
    const outcome = untilPodEnds(s as unknown as WebSocket, finished, ended, 50);
    // The socket closes once terminated: as runOverSocket would settle then.
    setTimeout(() => s.terminated && settle(137), 100);
    await expect(outcome).rejects.toThrow(/deleted/);
    expect(s.terminated).toBe(true);
  });

  it('keeps a status that was on its way as the pod ended, unless it says killed', async () => {
    await expect(untilPodEnds(socket() as unknown as WebSocket, after(20, 0), after(1, new Error('deleted')), 500)).resolves.toBe(0);
    await expect(untilPodEnds(socket() as unknown as WebSocket, after(20, 137), after(1, new Error('deleted')), 500)).rejects.toThrow('deleted');
  });
});
