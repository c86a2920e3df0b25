/** Labels on every engine resource moat makes; `ls`, `down` and `gc` select by these, never by name. */
export const LABEL = {
  task: 'moat.task',
  repo: 'moat.repo',
  version: 'moat.version',
  /** Which moat state directory owns the resource, so two homes (or test runs) never collect each other's. */
  home: 'moat.home',
  role: 'moat.role',
  template: 'moat.template',
  /**
   * On a sandbox made ahead by a warm server's pool (a spare, waiting for a claim): an engine may
   * prepare it for the claim's first command (Kubernetes opens an exec into it). Stays after the claim.
   */
  madeAhead: 'moat.made-ahead',
} as const;

export function resourceLabels(input: { task: string; repoKey: string; homeKey: string; version: string; role: string }): Record<string, string> {
  return {
    [LABEL.task]: input.task,
    [LABEL.repo]: input.repoKey,
    [LABEL.home]: input.homeKey,
    [LABEL.version]: input.version,
    [LABEL.role]: input.role,
  };
}
