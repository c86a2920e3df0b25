import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NetworkMode } from '../domain/egress-policy.js';
import type { BoundSecret } from '../domain/bound-secret.js';
import type { UpstreamProxyConfig } from './upstream-proxy.js';
import type { RequestRuleSpec } from '../domain/request-rules.js';

/**
 * What the gateway needs to serve one task, written by moat into the task's directory (never
 * mounted into the sandbox). The gateway re-reads it when it changes, so `moat allow` and
 * `moat deny` act on a running task at once.
 */
export interface TaskEgressFile {
  task: string;
  repoKey: string;
  mode: NetworkMode;
  allow: string[];
  deny: string[];
  /** Method and path rules (request-rules.ts); their hosts' HTTPS is inspected with the task's CA. */
  rules?: RequestRuleSpec[];
  /** The unix socket the sandbox reaches the gateway through. */
  socket: string;
  audit: string;
  /** Bound secrets, without their values (those reach the gateway over its control socket only). */
  secrets?: BoundSecret[];
  /** The task's own CA (host-side key), when a secret is bound with interception. */
  ca?: { key: string; cert: string };
  /** The sandbox's uid/gid: the socket is that user's alone (others on the host must not use the task's grants). */
  user?: { uid: number; gid: number };
  /** Address ranges allowed names may resolve into (egress.allowAddresses, user config only). */
  allowAddresses?: string[];
  /** The host's upstream proxy; its credentials stay on the host (this file is never mounted). */
  upstream?: UpstreamProxyConfig;
  /** A PEM file of extra CAs the user trusts (egress.trustCa / trustHostCa), for the gateway's own TLS. */
  trustCa?: string;
  /** egress.ask: an undecided host waits this many seconds for a human's answer (service/pending.ts). */
  askSeconds?: number;
}

export function egressDir(taskDir: string): string {
  return join(taskDir, 'egress');
}

export function policyFile(taskDir: string): string {
  return join(egressDir(taskDir), 'policy.json');
}

/**
 * The socket lives in a short directory of its own (unix socket paths are limited to 108 bytes)
 * and that directory alone is mounted into the sandbox.
 */
export function socketDir(home: string, repoKey: string, task: string): string {
  return join(home, 's', createHash('sha256').update(`${repoKey}/${task}`).digest('hex').slice(0, 12));
}

export const SANDBOX_SOCKET_DIR = '/moat/egress';
export const SOCKET_NAME = 'p.sock';
/** Beside it: where the sandbox hands the gateway its own listening socket (listener-handoff.ts, native/handoff.c). */
export const HANDOFF_NAME = 'h.sock';

export async function writeTaskEgress(taskDir: string, value: TaskEgressFile): Promise<void> {
  await mkdir(egressDir(taskDir), { recursive: true, mode: 0o700 });
  const file = policyFile(taskDir);
  await writeFile(`${file}.tmp`, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

export async function readTaskEgress(taskDir: string): Promise<TaskEgressFile | undefined> {
  try {
    return JSON.parse(await readFile(policyFile(taskDir), 'utf8')) as TaskEgressFile;
  } catch {
    return undefined;
  }
}
