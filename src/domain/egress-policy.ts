import type { RequestRule } from './request-rules.js';
import { cidrContains, classifyAddress, formatIp, parseCidr, parseIp, type AddressClass, type Cidr, type IpAddress } from './ip-address.js';

/**
 * Who a task may talk to. Pure: the gateway asks `decideTarget` before it resolves anything (so a
 * denied name is never looked up) and `decideAddress` for every address a name resolved to.
 */
export type NetworkMode = 'none' | 'allowlist' | 'open';

export type EgressRule =
  | { kind: 'host'; host: string; port?: number; text: string }
  | { kind: 'suffix'; suffix: string; port?: number; text: string }
  | { kind: 'ip'; ip: IpAddress; port?: number; text: string }
  | { kind: 'cidr'; cidr: Cidr; port?: number; text: string };

export interface EgressPolicy {
  mode: NetworkMode;
  allow: EgressRule[];
  deny: EgressRule[];
  /**
   * Address ranges an allowed *name* may resolve into although they are not public (the user's
   * network answers with its inspecting proxy there). From the user's config only; they never
   * make an address itself a target: an IP literal still needs an allow rule.
   */
  allowAddresses?: Cidr[];
  /** Method and path rules of hosts (request-rules.ts): requests to those hosts are judged one by one. */
  requests?: RequestRule[];
}

export type Target = { kind: 'name'; name: string } | { kind: 'ip'; ip: IpAddress };

export interface Decision {
  allowed: boolean;
  /** The rule or reason that decided, for the audit log. */
  rule: string;
  /**
   * The allowing rule names this port explicitly (github.com:22): the user admitted that service,
   * so a tunnel there may carry any protocol (ssh). Without a port, a tunnel must carry TLS.
   */
  anyProtocol?: boolean;
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/**
 * Canonical form of a host as a client wrote it: a lower-case name without a trailing dot, or an
 * IP address however it was spelt. Anything else (NUL, spaces, percent, empty labels) is invalid.
 */
export function parseTarget(raw: string): Target | undefined {
  const host = raw.toLowerCase();
  if (host.startsWith('[')) {
    const ip = parseIp(host);
    return ip ? { kind: 'ip', ip } : undefined;
  }
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split('.');
  // A name whose last label is numeric is an IPv4 address in some spelling (inet_aton accepts many).
  if (/^(0x[0-9a-f]*|[0-9]+)$/.test(labels[labels.length - 1]!)) {
    const ip = parseIp(name);
    return ip ? { kind: 'ip', ip } : undefined;
  }
  if (name.includes(':')) {
    const ip = parseIp(name);
    return ip ? { kind: 'ip', ip } : undefined;
  }
  if (!labels.every((label) => LABEL.test(label))) return undefined;
  return { kind: 'name', name };
}

export function parseRule(text: string): EgressRule | string {
  const trimmed = text.trim().toLowerCase();
  let hostPart = trimmed;
  let port: number | undefined;
  const portMatch = /^(.*[^:]):(\d{1,5})$/.exec(trimmed);
  if (portMatch && !trimmed.startsWith('[') && !portMatch[1]!.includes(':')) {
    hostPart = portMatch[1]!;
    port = Number(portMatch[2]);
  } else if (/^\[.*\]:\d{1,5}$/.test(trimmed)) {
    hostPart = trimmed.slice(0, trimmed.lastIndexOf(':'));
    port = Number(trimmed.slice(trimmed.lastIndexOf(':') + 1));
  }
  if (port !== undefined && (port < 1 || port > 65535)) return `port out of range in "${text}"`;
  if (hostPart.includes('/')) {
    const cidr = parseCidr(hostPart.replace(/^\[|\]$/g, ''));
    return cidr ? { kind: 'cidr', cidr, port, text } : `"${text}" is not a valid CIDR block`;
  }
  if (hostPart === '*' || hostPart === '*.') return `"${text}": a bare * would allow everything; use network: open to say that`;
  if (hostPart.startsWith('*.')) {
    const suffix = parseTarget(hostPart.slice(2));
    if (!suffix || suffix.kind !== 'name') return `"${text}" is not a valid wildcard`;
    if (!suffix.name.includes('.')) return `"${text}": a wildcard over a whole top-level domain is too broad`;
    return { kind: 'suffix', suffix: suffix.name, port, text };
  }
  if (hostPart.includes('*')) return `"${text}": only a leading *. wildcard is supported`;
  const target = parseTarget(hostPart);
  if (!target) return `"${text}" is not a valid host name or address`;
  return target.kind === 'ip' ? { kind: 'ip', ip: target.ip, port, text } : { kind: 'host', host: target.name, port, text };
}

function portMatches(rule: EgressRule, port: number): boolean {
  return rule.port === undefined || rule.port === port;
}

function ruleMatches(rule: EgressRule, target: Target, port: number): boolean {
  if (!portMatches(rule, port)) return false;
  if (target.kind === 'name') {
    if (rule.kind === 'host') return rule.host === target.name;
    if (rule.kind === 'suffix') return target.name.endsWith(`.${rule.suffix}`);
    return false;
  }
  if (rule.kind === 'ip') return rule.ip.family === target.ip.family && rule.ip.value === target.ip.value;
  if (rule.kind === 'cidr') return cidrContains(rule.cidr, target.ip);
  return false;
}

/** Before any lookup: may the task ask for this host and port at all? Deny wins over allow. */
export function decideTarget(policy: EgressPolicy, target: Target, port: number): Decision {
  if (policy.mode === 'none') return { allowed: false, rule: 'network: none' };
  const denied = policy.deny.find((rule) => ruleMatches(rule, target, port));
  if (denied) return { allowed: false, rule: `deny ${denied.text}` };
  if (policy.mode === 'open') return { allowed: true, rule: 'network: open' };
  // A rule that names the port says any protocol there; it stands even when a rule for the bare
  // name (TLS only) also matches, whichever came first in the list.
  const allowed =
    policy.allow.find((rule) => rule.port !== undefined && ruleMatches(rule, target, port)) ?? policy.allow.find((rule) => ruleMatches(rule, target, port));
  if (allowed) return { allowed: true, rule: `allow ${allowed.text}`, ...(allowed.port !== undefined ? { anyProtocol: true } : {}) };
  const what = target.kind === 'name' ? target.name : formatIp(target.ip);
  return { allowed: false, rule: `not in allowlist: ${what}` };
}

/**
 * After the lookup: may the connection go to this address? Loopback, private, link-local, cloud
 * metadata, CGNAT, multicast, mapped and NAT64 addresses are refused unless a CIDR or IP rule
 * names them: an allowed name must not become a way into the host or its network.
 */
export function decideAddress(policy: EgressPolicy, ip: IpAddress, port: number): Decision & { addressClass: AddressClass } {
  const addressClass = classifyAddress(ip);
  const target: Target = { kind: 'ip', ip };
  const denied = policy.deny.find((rule) => (rule.kind === 'cidr' || rule.kind === 'ip') && ruleMatches(rule, target, port));
  if (denied) return { allowed: false, rule: `deny ${denied.text}`, addressClass };
  if (addressClass === 'public') return { allowed: true, rule: 'public address', addressClass };
  const listed = policy.allow.find((rule) => (rule.kind === 'cidr' || rule.kind === 'ip') && ruleMatches(rule, target, port));
  if (listed) return { allowed: true, rule: `allow ${listed.text}`, addressClass };
  // Metadata and loopback stay refused whatever range the user admits: no network's proxy lives there.
  const range = addressClass === 'metadata' || addressClass === 'loopback' ? undefined : policy.allowAddresses?.find((cidr) => cidrContains(cidr, ip));
  if (range) return { allowed: true, rule: `allowAddresses ${formatCidr(range)}`, addressClass };
  return { allowed: false, rule: `${addressClass} address ${formatIp(ip)} refused`, addressClass };
}

export function buildPolicy(mode: NetworkMode, allow: string[], deny: string[], allowAddresses: string[] = []): EgressPolicy | { errors: string[] } {
  const errors: string[] = [];
  const parse = (texts: string[]) =>
    texts.flatMap((text) => {
      const rule = parseRule(text);
      if (typeof rule === 'string') {
        errors.push(rule);
        return [];
      }
      return [rule];
    });
  const ranges = allowAddresses.flatMap((text) => {
    const cidr = parseAddressRange(text);
    if (typeof cidr === 'string') {
      errors.push(cidr);
      return [];
    }
    return [cidr];
  });
  const policy: EgressPolicy = { mode, allow: parse(allow), deny: parse(deny), ...(ranges.length > 0 ? { allowAddresses: ranges } : {}) };
  return errors.length > 0 ? { errors } : policy;
}

/** An `allowAddresses` entry: a CIDR block (or one address); never wide enough to mean "anything". */
export function parseAddressRange(text: string): Cidr | string {
  const trimmed = text.trim();
  const ip = trimmed.includes('/') ? undefined : parseIp(trimmed);
  const cidr = ip ? { family: ip.family, network: ip.value, prefix: ip.family === 4 ? 32 : 128 } : parseCidr(trimmed);
  if (!cidr) return `"${text}" is not a CIDR block such as 203.0.113.0/24`;
  if (cidr.prefix < (cidr.family === 4 ? 8 : 32)) return `"${text}" is too wide for allowAddresses (at most a /8, or a /32 for IPv6)`;
  return cidr;
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp({ family: cidr.family, value: cidr.network })}/${cidr.prefix}`;
}
