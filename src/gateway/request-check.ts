import { decideTarget, type EgressPolicy, type Target } from '../domain/egress-policy.js';
import { decideRequest, rulesFor, type RequestFacts } from '../domain/request-rules.js';
import type { DenialKind } from './denials.js';

export type RequestVerdict =
  { allowed: true; rule: string; maxBody?: number; ruled: boolean } | { allowed: false; rule: string; status: string; kind: DenialKind };

/**
 * A request the gateway reads, against the live policy: the host itself, then its method and
 * path rules (none: allowed). Asked for every request, so `moat deny` acts on the next one, also
 * on a kept-alive connection.
 */
export function judgeRequest(policy: EgressPolicy, target: Target, port: number, request: RequestFacts): RequestVerdict {
  const byName = decideTarget(policy, target, port);
  if (!byName.allowed) return { allowed: false, rule: byName.rule, status: '403 Forbidden', kind: 'policy' };
  const rules = rulesFor(policy.requests, target, port, byName.anyProtocol === true);
  const decision = decideRequest(rules, request);
  if (!decision.allowed)
    return { allowed: false, rule: decision.rule, status: decision.status === 413 ? '413 Content Too Large' : '403 Forbidden', kind: 'rule' };
  return { ...decision, ruled: rules.length > 0 };
}
