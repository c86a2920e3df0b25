import { describe, expect, it } from 'vitest';
import { MemoryEngine } from '../../src/engine/memory-engine.js';
import { describeDisk, planDisk } from '../../src/service/disk-plan.js';

/** An engine whose answer about caps the test chooses (the in-memory engine has no disk of its own). */
function engineThat(hostMounts: boolean, support: { ok: true } | { ok: false; why: string }): MemoryEngine {
  const engine = new MemoryEngine({ capabilities: { hostMounts, hostCgroups: hostMounts, workspaceOutlivesSandbox: true } });
  engine.diskCapSupport = async () => support;
  return engine;
}

describe('the disk cap a task gets (disk-plan.ts)', () => {
  const input = { uid: 1000, helperImage: 'moat-base:bookworm', env: {} };

  it('a docker-group user on a local engine gets the cap the engine makes, in an engine volume', async () => {
    const plan = await planDisk(engineThat(true, { ok: true }), input);
    expect(plan).toEqual({ disk: 'engine', inVolume: true });
    expect(describeDisk(plan)).toMatch(/^kernel: .*made by the engine/);
  });

  it('where the engine cannot cap, the workspace stays where it was and moat says why, never claims a cap', async () => {
    const local = await planDisk(engineThat(true, { ok: false, why: 'this host has no /dev/loop-control' }), input);
    expect(local).toMatchObject({ disk: 'none', inVolume: false });
    expect(local.why).toMatch(/needs moat to run as root.*no \/dev\/loop-control/);
    const remote = await planDisk(engineThat(false, { ok: false, why: 'the engine at tcp://x has no usable /dev/loop-control' }), input);
    expect(remote).toEqual({ disk: 'none', inVolume: true, why: 'the engine at tcp://x has no usable /dev/loop-control' });
    expect(describeDisk(remote)).toMatch(/^workspace NOT capped \(the engine at tcp:\/\/x/);
  });

  it('a remote engine that can cap gets the engine cap', async () => {
    expect(await planDisk(engineThat(false, { ok: true }), input)).toEqual({ disk: 'engine', inVolume: true });
  });
});
