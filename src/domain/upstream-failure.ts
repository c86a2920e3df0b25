/**
 * Why an agent's model API let it down, told from the gateway's audit lines of the agent's run.
 * Agents word a refused key, a rate limit or a cut stream each their own way (a JSON blob, a retry
 * loop, a generic "stream error", sometimes nothing); the gateway saw the answer itself, so
 * `moat agent` can add one line that names the cause the same way for every template.
 */

/** What this needs of an audit line (src/gateway/audit.ts writes them). */
export interface RouteAttempt {
  host: string;
  rule: string;
  decision: 'allowed' | 'denied';
  status?: number;
  cut?: true;
}

export interface UpstreamFailure {
  route: string;
  host: string;
  /** The upstream's status; absent when it closed without answering. */
  status?: number;
  cut: boolean;
  message: string;
  hint: string;
}

const ROUTE_RULE = /^route (\S+)/;

/**
 * The failure to report for a run, from its audit lines in order: the last request the agent sent
 * through a route, when that one failed. An agent that retried and got through, then failed for
 * some other reason, gets no line that would send its user after the wrong cause.
 */
export function upstreamFailure(attempts: readonly RouteAttempt[]): UpstreamFailure | undefined {
  const last = [...attempts].reverse().find((a) => a.decision === 'allowed' && ROUTE_RULE.test(a.rule));
  if (!last) return undefined;
  const route = ROUTE_RULE.exec(last.rule)![1]!;
  const where = `the model API at ${last.host} (route ${route})`;
  const status = last.status;
  const failure = (message: string, hint: string): UpstreamFailure => ({
    route,
    host: last.host,
    ...(status !== undefined ? { status } : {}),
    cut: last.cut === true,
    message,
    hint,
  });
  if (status === undefined)
    return last.cut ? failure(`${where} closed the connection without answering`, 'a network or provider problem: run the agent again') : undefined;
  if (status === 401 || status === 403)
    return failure(
      `${where} refused the key: ${status}`,
      'the key moat reads for it (secrets: in your config, or the variable the template names) is wrong, revoked or lacks access',
    );
  if (status === 429) return failure(`${where} is rate-limiting this key: 429`, "wait and run again, or check the account's quota");
  if (status >= 500) return failure(`${where} failed on its side: ${status}`, 'run again later');
  if (status >= 400) return failure(`${where} rejected the agent's request: ${status}`, "check the model name and the template's agent version");
  if (last.cut)
    return failure(`${where} cut its answer short: the connection ended mid-response (${status})`, 'a network or provider problem: run the agent again');
  return undefined;
}

/** The one line `moat agent` prints. */
export function upstreamFailureLine(failure: UpstreamFailure): string {
  return `${failure.message} (hint: ${failure.hint})`;
}
