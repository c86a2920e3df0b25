import type { ContainerEngine } from '../engine/engine.js';
import { enforcementText, type CgroupLimit } from '../domain/limit-enforcement.js';
import { MoatError } from '../errors.js';
import type { MoatConfig } from '../config/schema.js';

/**
 * Before a task is made: the limits this engine cannot enforce must each be accepted by the
 * user's own config (`acceptUnenforcedLimits`; a repository cannot set it), or `up` refuses. What
 * can still be held (rlimits, tmpfs sizes, the disk cap, the time limit) is held either way.
 * Returns the accepted gap, which the task's record keeps for doctor, ls and stats.
 */
export async function checkLimitEnforcement(engine: ContainerEngine, userConfig: MoatConfig): Promise<CgroupLimit[]> {
  const enforcement = await engine.limitEnforcement?.();
  if (!enforcement || enforcement.unenforced.length === 0) return [];
  const accepted = new Set(userConfig.acceptUnenforcedLimits ?? []);
  const refused = enforcement.unenforced.filter((limit) => !accepted.has(limit));
  if (refused.length > 0) {
    throw new MoatError('E_LIMITS_UNENFORCED', `the ${refused.join(', ')} limit${refused.length > 1 ? 's' : ''} cannot be enforced here: ${enforcement.why}`, {
      hint: `accept the gap in your user config (acceptUnenforcedLimits: [${enforcement.unenforced.join(', ')}]), or ${enforcement.remedy ?? 'use an engine that enforces it (rootful, or cgroup v2 with delegation)'}`,
      details: { unenforced: enforcement.unenforced, why: enforcement.why },
    });
  }
  return enforcement.unenforced;
}

/** `doctor`: each cgroup limit this engine cannot enforce is said so (NOT enforced), with whether the user accepted it. */
export async function reportLimitGaps(
  engine: ContainerEngine,
  userConfig: MoatConfig,
  checks: Array<{ name: string; status: 'ok' | 'warn' | 'fail'; detail: string; fix?: string }>,
  enforcement: Record<string, string>,
): Promise<void> {
  const gap = await engine.limitEnforcement?.();
  if (!gap || gap.unenforced.length === 0) return;
  const text = enforcementText(gap.unenforced, gap.why);
  // doctor's keys: memory, cpu, pids.
  if (gap.unenforced.includes('memory')) enforcement.memory = text.memory;
  if (gap.unenforced.includes('cpus')) enforcement.cpu = text.cpus;
  if (gap.unenforced.includes('pids')) enforcement.pids = text.pids;
  const accepted = new Set(userConfig.acceptUnenforcedLimits ?? []);
  const refused = gap.unenforced.filter((limit) => !accepted.has(limit));
  checks.push({
    name: 'limits',
    status: 'warn',
    detail: `${gap.unenforced.join(', ')} NOT enforced: ${gap.why}; ${refused.length > 0 ? `moat up refuses until your config accepts ${refused.join(', ')}` : 'accepted in your config (acceptUnenforcedLimits)'}`,
    fix: `${gap.remedy ?? 'use rootful Podman or Docker, or cgroup v2 with the controllers delegated to your user'}; or accept the gap: acceptUnenforcedLimits: [${gap.unenforced.join(', ')}]`,
  });
}
