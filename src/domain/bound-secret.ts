/**
 * A secret bound to hosts: the sandbox holds a placeholder, the gateway writes the real value into
 * one declared header on requests to the bound hosts, and nowhere else. Never into bodies or URLs:
 * an allowed host that echoes a body would hand the value back to the agent.
 */
export interface BoundSecret {
  /** The variable the agent reads. */
  name: string;
  /** What the agent sees in that variable. Unique per task, so it identifies the task if it leaks. */
  placeholder: string;
  hosts: string[];
  header: string;
  format: string;
  methods?: string[];
  pathPrefixes?: string[];
  route?: string;
  /** TLS to the bound hosts is terminated by the gateway with the task's own CA. */
  intercept?: boolean;
  /** Where the host reads the value again (never the value itself). */
  from?: SecretSource;
}

/** A host environment variable, a file, or a command moat runs on the host. */
export type SecretSource = { env: string } | { file: string } | { command: string[] };

/** The reserved host name of the gateway's own plain-HTTP routes; never resolved. */
export const GATEWAY_HOST = 'moat.gateway';

export function headerValue(secret: BoundSecret, value: string): string {
  return secret.format.split('{value}').join(value);
}

/** Does this request get the secret? Host, method and path must all match what was declared. */
export function secretApplies(secret: BoundSecret, request: { host: string; method: string; path: string }): boolean {
  if (!secret.hosts.some((h) => hostOf(h) === request.host.toLowerCase())) return false;
  if (secret.methods && !secret.methods.includes(request.method)) return false;
  if (secret.pathPrefixes && !secret.pathPrefixes.some((prefix) => request.path.startsWith(prefix))) return false;
  return true;
}

/** Bound hosts may carry a port ("api.example.com:8443"); the header is bound to the name. */
export function hostOf(entry: string): string {
  return entry.replace(/:\d+$/, '').toLowerCase();
}

export function portOf(entry: string, fallback: number): number {
  const match = /:(\d+)$/.exec(entry);
  return match ? Number(match[1]) : fallback;
}

export function placeholderFor(name: string, random: string): string {
  return `moat-placeholder-${name.toLowerCase().replace(/_/g, '-')}-${random}`;
}
