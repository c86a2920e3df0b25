/** Undo steps of a half-made task, run newest first when a later step fails. */
export class Rollback {
  private readonly steps: Array<() => Promise<unknown>> = [];
  add(step: () => Promise<unknown>): void {
    this.steps.push(step);
  }
  /** Whether every step succeeded (a failed one leaves something for `moat gc`). */
  async run(): Promise<boolean> {
    let clean = true;
    for (const step of this.steps.reverse()) {
      await step().catch(() => {
        clean = false;
      });
    }
    return clean;
  }
}
