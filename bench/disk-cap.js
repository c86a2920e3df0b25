// The engine-made disk cap (src/engine/docker-disk.ts): making and removing a task's capped
// workspace volume (a sparse ext4 image, its loop device, a local volume on it) against an
// uncapped volume made the same way (createVolume without a cap: the engine's volume and the
// helper that gives its root to the sandbox user). Alternating, so that both see the same machine
// state; prints medians and the ratios. Not a test: nothing here asserts a time.
// Needs `npm run build` (it drives dist/, as moat does) and the base image.
import { median, machine } from './figures.js';
import { DockerEngine } from '../dist/engine/docker-engine.js';
import { findEngine } from '../dist/engine/find-engine.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 7);
const image = process.env.MOAT_BASE_IMAGE ?? 'moat-base:bookworm';
const bytes = 1024 ** 3;
const engine = new DockerEngine(await findEngine());
const support = await engine.diskCapSupport(image);
if (!support.ok) throw new Error(`no engine-made disk cap here: ${support.why}`);

const labels = { 'moat.bench': 'disk-cap' };
const owner = { uid: 1000, gid: 1000, image };
const time = async (fn) => {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
};
const samples = { 'capped create': [], 'uncapped create': [], 'capped remove': [], 'uncapped remove': [] };
for (let i = 0; i < rounds; i += 1) {
  const capped = `moat-bench-disk-capped-${process.pid}-${i}`;
  const plain = `moat-bench-disk-plain-${process.pid}-${i}`;
  samples['capped create'].push(await time(() => engine.createVolume(capped, labels, owner, { bytes, helperImage: image })));
  samples['uncapped create'].push(await time(() => engine.createVolume(plain, labels, owner)));
  samples['capped remove'].push(await time(() => engine.removeVolume(capped)));
  samples['uncapped remove'].push(await time(() => engine.removeVolume(plain)));
}

console.log(`machine: ${machine()}; ${rounds} rounds, alternating; cap ${bytes / 1024 ** 3} GiB`);
console.log('| step | capped ms | uncapped ms | x uncapped |\n|---|---|---|---|');
for (const step of ['create', 'remove']) {
  const capped = median(samples[`capped ${step}`]);
  const plain = median(samples[`uncapped ${step}`]);
  console.log(`| ${step} | ${capped.toFixed(0)} | ${plain.toFixed(0)} | ${(capped / plain).toFixed(2)} |`);
}
