import { parseRule, type EgressRule, type Target } from './egress-policy.js';

/**
 * Method and path rules: an allowed host narrowed to some methods, some path prefixes and a cap on
 * each request's body, so that an allowed registry or code host cannot become an upload channel.
 * Pure: the gateway asks `decideRequest` for every request it sees of a host that has rules
 * (plain HTTP, or HTTPS it inspects with the task's own CA) and `inspects` whether a CONNECT
 * needs the request line at all.
 */

/** One rule as configured (and as stored in the task record and the gateway's task file). */
export interface RequestRuleSpec {
  /** The host part, as an egress rule: `api.github.com`, `*.example.com`, `host:8443`. */
  host: string;
  methods?: string[];
  paths?: string[];
  /** Largest request body in bytes. */
  maxBody?: number;
  /**
   * Who stated it. The user's rules grant (a request passes when one of them admits it); a
   * repository's rules only narrow: a request must pass the user's rules *and* the repository's.
   */
  from: 'user' | 'repo';
}

export interface RequestRule {
  match: EgressRule;
  methods?: Set<string>;
  /** Canonical prefixes without a trailing slash ('' for the root). */
  paths?: string[];
  maxBody?: number;
  from: 'user' | 'repo';
  text: string;
}

export interface RequestFacts {
  method: string;
  /** The request target exactly as the client sent it (origin form: /path?query). */
  target: string;
  /** Declared body length; undefined when chunked (then counted while it streams). */
  bodyLength?: number;
}

export type RequestDecision = { allowed: true; rule: string; maxBody?: number } | { allowed: false; rule: string; status: 403 | 413 };

const METHOD = /^[A-Z]{1,16}$/;

/** Validates one configured rule; a string says what is wrong. */
export function parseRequestRule(spec: RequestRuleSpec): RequestRule | string {
  const match = parseRule(spec.host);
  if (typeof match === 'string') return match;
  if (match.kind === 'ip' || match.kind === 'cidr')
    return `"${spec.host}": method and path rules need a host name (moat inspects its TLS with a certificate for that name)`;
  const methods = spec.methods?.map((m) => m.toUpperCase());
  const bad = methods?.find((m) => !METHOD.test(m));
  if (bad !== undefined) return `"${spec.host}": "${bad}" is not an HTTP method`;
  const paths: string[] = [];
  for (const prefix of spec.paths ?? []) {
    const canonical = canonicalPath(prefix);
    if ('refused' in canonical || canonical.query)
      return `"${spec.host}": path "${prefix}" must be a plain absolute path such as /repos/acme/ (no dot segments, //, ;, %2F, query)`;
    paths.push(canonical.path.replace(/\/$/, ''));
  }
  if (spec.maxBody !== undefined && (!Number.isSafeInteger(spec.maxBody) || spec.maxBody < 0)) return `"${spec.host}": maxBody must be a size`;
  const parts = [
    methods ? methods.join(',') : undefined,
    spec.paths ? spec.paths.join(',') : undefined,
    spec.maxBody !== undefined ? `body<=${spec.maxBody}` : undefined,
  ].filter(Boolean);
  return {
    match,
    ...(methods ? { methods: new Set(methods) } : {}),
    ...(spec.paths ? { paths } : {}),
    ...(spec.maxBody !== undefined ? { maxBody: spec.maxBody } : {}),
    from: spec.from,
    text: `${spec.host} ${parts.join(' ')}`.trim(),
  };
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * The one spelling of a path the rules compare, or why there is none. Strict by design: what two
 * parsers could read differently is refused, not guessed at. Percent-encoded unreserved
 * characters are decoded (%61 is "a" to every server) and other escapes upper-cased; refused are
 * dot segments (also encoded), empty segments (//), backslashes, ";" parameters, encoded "/",
 * "\\" and "%" (a second decoding), NUL, fragments, and anything that is not printable ASCII.
 * Comparison is case-sensitive: a server that ignores case only sees fewer paths admitted.
 */
export function canonicalPath(target: string): { path: string; query: boolean } | { refused: string } {
  if (!target.startsWith('/')) return { refused: 'request target is not an origin-form path' };
  if (/[^\x21-\x7e]/.test(target)) return { refused: 'path holds characters outside printable ASCII' };
  if (target.includes('#')) return { refused: 'path holds a fragment' };
  const queryAt = target.indexOf('?');
  const raw = queryAt < 0 ? target : target.slice(0, queryAt);
  if (raw.includes('\\')) return { refused: 'path holds a backslash' };
  if (raw.includes(';')) return { refused: 'path holds ";" parameters' };
  let path = '';
  for (let i = 0; i < raw.length; i += 1) {
    const c = raw[i]!;
    if (c !== '%') {
      path += c;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { refused: 'path holds a malformed percent escape' };
    const decoded = String.fromCharCode(parseInt(hex, 16));
    if (decoded === '/' || decoded === '\\' || decoded === '%' || decoded === '\0') return { refused: `path holds an encoded ${JSON.stringify(decoded)}` };
    path += UNRESERVED.test(decoded) ? decoded : `%${hex.toUpperCase()}`;
    i += 2;
  }
  const segments = path.split('/').slice(1);
  for (const [index, segment] of segments.entries()) {
    if (segment === '.' || segment === '..') return { refused: 'path holds a dot segment' };
    // Only the last segment may be empty: "/a/" is a path, "/a//b" is a trick.
    if (segment === '' && index < segments.length - 1) return { refused: 'path holds an empty segment (//)' };
  }
  return { path, query: queryAt >= 0 };
}

/** Under a prefix by whole segments: /repos/acme admits /repos/acme and /repos/acme/x, never /repos/acme-evil. */
function under(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`) || (prefix === '' && path.startsWith('/'));
}

function hostMatches(rule: EgressRule, target: Target, port: number, anyProtocol: boolean): boolean {
  if (target.kind !== 'name') return false;
  if (rule.port !== undefined ? rule.port !== port : anyProtocol) return false;
  if (rule.kind === 'host') return rule.host === target.name;
  if (rule.kind === 'suffix') return target.name.endsWith(`.${rule.suffix}`);
  return false;
}

/**
 * The rules that speak about this host and port. A rule without a port covers every port except
 * one an allow entry names as host:port (that entry admits any protocol there, ssh say, which has
 * no request line); give the rule that port to cover it too.
 */
export function rulesFor(rules: RequestRule[] | undefined, target: Target, port: number, anyProtocol = false): RequestRule[] {
  return (rules ?? []).filter((rule) => hostMatches(rule.match, target, port, anyProtocol));
}

/** Whether the gateway must see this host's requests (and so inspect its TLS with the task's CA). */
export function inspects(rules: RequestRule[] | undefined, target: Target, port: number, anyProtocol = false): boolean {
  return rulesFor(rules, target, port, anyProtocol).length > 0;
}

/**
 * One request against the rules of its host. The user's rules and the repository's are two
 * layers: in each layer that has rules for the host, one of them must admit the request; so a
 * repository can take methods and paths away, never add them. No rules: allowed.
 */
export function decideRequest(applicable: RequestRule[], request: RequestFacts): RequestDecision {
  if (applicable.length === 0) return { allowed: true, rule: 'no request rules' };
  const needsPath = applicable.some((rule) => rule.paths !== undefined);
  const canonical = needsPath ? canonicalPath(request.target) : undefined;
  if (canonical && 'refused' in canonical) return { allowed: false, rule: `rule ${applicable[0]!.text}: ${canonical.refused}`, status: 403 };
  const path = canonical?.path;
  let cap: number | undefined;
  const admitted: string[] = [];
  for (const layer of ['user', 'repo'] as const) {
    const rules = applicable.filter((rule) => rule.from === layer);
    if (rules.length === 0) continue;
    const methodOk = rules.filter((rule) => !rule.methods || rule.methods.has(request.method));
    if (methodOk.length === 0) return { allowed: false, rule: `rule ${rules[0]!.text}: method ${request.method} not allowed`, status: 403 };
    const pathOk = methodOk.filter((rule) => !rule.paths || rule.paths.some((prefix) => under(path!, prefix)));
    if (pathOk.length === 0) return { allowed: false, rule: `rule ${methodOk[0]!.text}: path ${path ?? '?'} not under an allowed prefix`, status: 403 };
    // The layer's widest cap among the rules that admit the request; across layers the narrowest.
    const caps = pathOk.map((rule) => rule.maxBody ?? Infinity);
    const layerCap = Math.max(...caps);
    if (layerCap !== Infinity) cap = Math.min(cap ?? Infinity, layerCap);
    admitted.push(pathOk[0]!.text);
  }
  if (cap !== undefined && request.bodyLength !== undefined && request.bodyLength > cap) {
    return { allowed: false, rule: `rule ${admitted.join(' + ')}: body of ${request.bodyLength} bytes over the cap of ${cap}`, status: 413 };
  }
  return { allowed: true, rule: `rule ${admitted.join(' + ')}`, ...(cap !== undefined ? { maxBody: cap } : {}) };
}

/** A request's path for the audit log: the query's content never, only that there was one. */
export function auditPath(target: string): string {
  const queryAt = target.indexOf('?');
  const path = queryAt < 0 ? target : `${target.slice(0, queryAt)}?[redacted]`;
  return path.slice(0, 512);
}

/** Every configured rule, validated; all problems at once. */
export function buildRequestRules(specs: RequestRuleSpec[]): RequestRule[] | { errors: string[] } {
  const errors: string[] = [];
  const rules: RequestRule[] = [];
  for (const spec of specs) {
    const rule = parseRequestRule(spec);
    if (typeof rule === 'string') errors.push(rule);
    else rules.push(rule);
  }
  return errors.length > 0 ? { errors } : rules;
}
