/**
 * What an engine's work for a pool's spare (the exec opened ahead into its pod, the proof of its
 * start) waits for before each step: nothing, unless the warm server sets its pool's quiet()
 * (service/task-pool.ts), so that a spare's steps on the engine side wait, like its host-side
 * ones, while a claim's command is served. On a small node an exec being opened competes with the
 * claim's own through the same API server, kubelet and runtime (docs/benchmarks.md).
 */
let gate: () => Promise<void> = () => Promise.resolve();

/** Sets what spares' engine steps wait for (undefined: nothing). One per process: the warm server's pool. */
export function setSpareGate(next: (() => Promise<void>) | undefined): void {
  gate = next ?? (() => Promise.resolve());
}

/** Resolves when a spare's next engine step may go. */
export function spareGate(): Promise<void> {
  return gate();
}
