import { describe, expect, it } from 'vitest';
import { up } from '../../../src/service/up.js';
import { TaskPool } from '../../../src/service/task-pool.js';
import type { MoatContext } from '../../../src/service/context.js';
import { git, worlds } from './world.js';

const world = worlds();

/** Makes what the last requests asked for, as the warm server does when quiet, and waits until it is ready. */
async function spareMade(pool: TaskPool): Promise<void> {
  pool.makeWanted();
  for (let waited = 0; pool.readyCount() === 0; waited += 10) {
    if (waited > 10_000) throw new Error('no spare was made');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function spareOf(ctx: MoatContext) {
  const spares = (await ctx.store.listAll({ pooled: true })).filter((record) => record.state === 'pooled');
  expect(spares).toHaveLength(1);
  return spares[0]!;
}

describe('a request a spare can serve', () => {
  it("takes the spare without asking the engine for the image its container runs from (the base image's id is still read)", async () => {
    const w = world();
    const pool = new TaskPool(4, 1);
    const asked: string[] = [];
    const imageId = w.engine.imageId.bind(w.engine);
    w.engine.imageId = async (ref) => (asked.push(ref), imageId(ref));
    const first = await up(w.context({ pool }), {});
    await spareMade(pool);
    const spare = await spareOf(w.context());
    asked.length = 0;

    const claimed = await up(w.context({ pool }), {});
    expect(claimed.name).toBe(spare.name);
    expect(claimed.state).toBe('running');
    expect(git(w.repo, 'rev-parse', `refs/heads/${claimed.branch}`)).toBe(claimed.baseCommit);
    // A changed base image is still noticed (its id goes into the tag, and so into the pool's key).
    expect(asked).toEqual(['moat-base:bookworm']);
    expect(claimed.image).toBe(first.image);
    await pool.close();
  });

  it('whose spare is gone when claimed makes its own task, and checks (here: builds again) the image first', async () => {
    const w = world();
    const pool = new TaskPool(4, 1);
    const first = await up(w.context({ pool }), {});
    await spareMade(pool);
    const spare = await spareOf(w.context());
    // Behind moat's back: the spare's container and the template image are removed.
    await w.engine.removeContainer(spare.containerId!);
    w.engine.images.delete(first.image);
    w.engine.journal.length = 0;

    const made = await up(w.context({ pool }), {});
    expect(made.name).not.toBe(spare.name);
    expect(made.state).toBe('running');
    expect(made.image).toBe(first.image);
    expect(w.engine.journal.filter((line) => line.startsWith('build '))).toEqual([`build ${first.image}`]);
    expect(w.engine.containers.get(made.containerId!)?.spec.image).toBe(first.image);
    // The spare that could not serve is gone, record and all.
    expect(await w.context().store.get(spare.repoKey, spare.name)).toBeUndefined();
    await pool.close();
  });
});
