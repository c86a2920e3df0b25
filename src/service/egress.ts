import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { createTaskCa, type TaskCa } from '../gateway/task-ca.js';
import { join } from 'node:path';
import { checkEgressRules, DEFAULT_ASK_SECONDS, egressNetworkOf, type EgressNetwork } from '../config/effective.js';
import { parseProxyUrl, type UpstreamProxyConfig } from '../gateway/upstream-proxy.js';
import type { TaskRecord } from '../domain/task.js';
import type { RequestRuleSpec } from '../domain/request-rules.js';
import { MoatError } from '../errors.js';
import { AUDIT_FILE, countAudit, readAudit, type AuditCursor, type AuditRecord } from '../gateway/audit.js';
import { MOAT_WHY_NAME, MOAT_WHY_SCRIPT } from '../gateway/denials.js';
import { reloadGateway } from '../gateway/gateway-process.js';
import { egressDir, policyFile, readTaskEgress, SOCKET_NAME, socketDir, writeTaskEgress } from '../gateway/task-egress.js';
import type { MoatContext } from './context.js';

/** Writes the task's egress file and makes the gateway listen for it. */
export async function openTaskEgress(ctx: MoatContext, record: TaskRecord): Promise<void> {
  const taskDir = ctx.store.taskDir(record.repoKey, record.name);
  // The network settings are the user's, read afresh: a repository has no say in them.
  const user = await ctx.userConfig();
  const network = egressNetworkOf(user);
  // egress.ask comes from the user's config or from the human's --ask at creation, never from a repository.
  const askSeconds = network.askSeconds ?? (record.ask ? (user.egress?.askSeconds ?? DEFAULT_ASK_SECONDS) : undefined);
  const extras = await extraCas(network, ctx.env);
  const upstream = upstreamOf(network, ctx.env);
  const ca = await shareTrust(ctx, record, taskDir, extras);
  await shareMoatWhy(socketDir(ctx.store.home, record.repoKey, record.name));
  await writeTaskEgress(taskDir, {
    task: record.name,
    repoKey: record.repoKey,
    mode: record.network,
    allow: record.egress?.allow ?? [],
    deny: record.egress?.deny ?? [],
    ...(record.egress?.rules?.length ? { rules: record.egress.rules } : {}),
    socket: join(socketDir(ctx.store.home, record.repoKey, record.name), SOCKET_NAME),
    audit: auditFile(ctx, record),
    secrets: record.secrets,
    user: record.user,
    ...(ca.taskCa ? { ca: ca.taskCa } : {}),
    ...(network.allowAddresses.length > 0 ? { allowAddresses: network.allowAddresses } : {}),
    ...(upstream ? { upstream } : {}),
    ...(ca.trustFile ? { trustCa: ca.trustFile } : {}),
    ...(askSeconds !== undefined ? { askSeconds } : {}),
  });
  await reloadGateway(ctx.store.home, ctx.env);
}

/** After a task's files are gone: the gateway stops listening for it (and leaves when idle). */
export async function closeTaskEgress(ctx: MoatContext): Promise<void> {
  await reloadGateway(ctx.store.home, ctx.env).catch(() => undefined);
}

export interface EgressChange {
  task: string;
  mode: string;
  allow: string[];
  deny: string[];
  /** The running container has no way out yet (network was none): `moat reset` gives it one. */
  needsReset: boolean;
}

/** `moat allow` / `moat deny`: changes a running task's policy; the gateway applies it to the next connection. */
export async function changeEgress(ctx: MoatContext, task: string, change: { allow?: string[]; deny?: string[] }): Promise<EgressChange> {
  const repo = await ctx.repo();
  return changeEgressOf(ctx, await ctx.store.require(repo.key, task), change);
}

/** The same for a task of any repository of the home (moat ui, pending answers). */
export async function changeEgressOf(ctx: MoatContext, record: TaskRecord, change: { allow?: string[]; deny?: string[] }): Promise<EgressChange> {
  const task = record.name;
  const taskDir = ctx.store.taskDir(record.repoKey, task);
  const current = await readTaskEgress(taskDir);
  const allow = [...new Set([...(current?.allow ?? record.egress?.allow ?? []), ...(change.allow ?? [])])].filter((h) => !(change.deny ?? []).includes(h));
  const deny = [...new Set([...(current?.deny ?? record.egress?.deny ?? []), ...(change.deny ?? [])])].filter((h) => !(change.allow ?? []).includes(h));
  const wasNone = record.network === 'none';
  const mode = wasNone && allow.length > 0 ? 'allowlist' : record.network;
  checkEgressRules(mode, allow, deny, 'egress rules');
  record.network = mode;
  // Method and path rules stay as created: `moat allow` admits hosts, it does not lift a rule.
  record.egress = { allow, deny, ...(record.egress?.rules ? { rules: record.egress.rules } : {}) };
  await ctx.store.save(record);
  if (mode !== 'none' && record.containerId) await openTaskEgress(ctx, record);
  return { task, mode, allow, deny, needsReset: wasNone && mode !== 'none' };
}

export async function egressLog(ctx: MoatContext, task: string): Promise<AuditRecord[]> {
  return (await egressLogSince(ctx, task)).records;
}

/** For `moat egress -f`: what was written since the cursor, across the log's rotation. */
export async function egressLogSince(ctx: MoatContext, task: string, cursor?: AuditCursor): Promise<{ records: AuditRecord[]; cursor?: AuditCursor }> {
  const repo = await ctx.repo();
  const record = await ctx.store.require(repo.key, task);
  return readAudit(auditFile(ctx, record), cursor);
}

export function egressCounts(ctx: MoatContext, record: TaskRecord): Promise<{ allowed: number; denied: number }> {
  return countAudit(auditFile(ctx, record));
}

export function auditFile(ctx: MoatContext, record: Pick<TaskRecord, 'repoKey' | 'name'>): string {
  return join(egressDir(ctx.store.taskDir(record.repoKey, record.name)), AUDIT_FILE);
}

/** A task without a container needs no listener: the gateway leaves when no task needs it. */
export async function suspendTaskEgress(ctx: MoatContext, record: TaskRecord): Promise<void> {
  if (record.network === 'none') return;
  await rm(policyFile(ctx.store.taskDir(record.repoKey, record.name)), { force: true });
  await rm(socketDir(ctx.store.home, record.repoKey, record.name), { recursive: true, force: true });
  await closeTaskEgress(ctx);
}

export async function removeTaskEgress(ctx: MoatContext, record: TaskRecord): Promise<void> {
  await rm(egressDir(ctx.store.taskDir(record.repoKey, record.name)), { recursive: true, force: true });
  await rm(socketDir(ctx.store.home, record.repoKey, record.name), { recursive: true, force: true });
  if (record.network !== 'none') await closeTaskEgress(ctx);
}

export function assertNetworkMode(value: string | undefined): 'none' | 'allowlist' | 'open' | undefined {
  if (value === undefined || value === 'none' || value === 'allowlist' || value === 'open') return value;
  throw new MoatError('E_USAGE', `unknown network mode ${JSON.stringify(value)}`, { hint: 'use --network none, allowlist or open' });
}

/**
 * The sandbox's trust, when it needs more than its image's: the task's own CA (interception of
 * bound hosts) and the CAs the user trusts (egress.trustCa / trustHostCa). A bundle of the public
 * CAs plus those, and the extra ones alone for Node; in the gateway's folder, mounted read-only.
 * Cargo's libcurl has its CA file built in and reads neither SSL_CERT_FILE nor CURL_CA_BUNDLE,
 * only its own CARGO_HTTP_CAINFO (test/integration/registry-install.test.ts).
 */
export const SANDBOX_CA_ENV = {
  SSL_CERT_FILE: '/moat/egress/bundle.pem',
  CURL_CA_BUNDLE: '/moat/egress/bundle.pem',
  REQUESTS_CA_BUNDLE: '/moat/egress/bundle.pem',
  GIT_SSL_CAINFO: '/moat/egress/bundle.pem',
  CARGO_HTTP_CAINFO: '/moat/egress/bundle.pem',
  NODE_EXTRA_CA_CERTS: '/moat/egress/ca.pem',
};

/** Whether a task with a network gets SANDBOX_CA_ENV. */
export function needsSandboxTrust(network: EgressNetwork, secrets: Array<{ intercept?: boolean }> = [], rules: RequestRuleSpec[] = []): boolean {
  return secrets.some((s) => s.intercept) || rules.length > 0 || network.trustHostCa || network.trustCa.length > 0;
}

/** Where a host keeps the CAs it added to its own trust (Debian's update-ca-certificates); MOAT_HOST_CA_DIR for tests. */
export function hostCaDir(env: NodeJS.ProcessEnv): string {
  return env.MOAT_HOST_CA_DIR ?? '/usr/local/share/ca-certificates';
}

/** The host's added CA files (*.crt, recursively), sorted. */
export async function hostCaFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (at: string, depth: number): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true }).catch(() => [])) {
      const path = join(at, entry.name);
      if (entry.isDirectory() && depth < 4) await walk(path, depth + 1);
      else if (entry.name.endsWith('.crt') && (entry.isFile() || entry.isSymbolicLink())) found.push(path);
    }
  };
  await walk(dir, 0);
  return found.sort();
}

/** The PEM certificates the user asked to trust; a file that is not one is a config error. */
export async function extraCas(network: EgressNetwork, env: NodeJS.ProcessEnv): Promise<string[]> {
  const files = [...network.trustCa, ...(network.trustHostCa ? await hostCaFiles(hostCaDir(env)) : [])];
  const pems: string[] = [];
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    const blocks = text?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    if (!blocks)
      throw new MoatError('E_CONFIG_INVALID', `egress trust: ${file} is not a readable PEM certificate`, {
        hint: 'egress.trustCa lists PEM files (-----BEGIN CERTIFICATE-----); fix or remove the entry',
      });
    pems.push(...blocks);
  }
  return pems;
}

/** The upstream proxy from the user's config, else from moat's environment; an unusable one is an error, not a silent direct route. */
export function upstreamOf(network: EgressNetwork, env: NodeJS.ProcessEnv): UpstreamProxyConfig | undefined {
  const noProxy =
    network.noProxy ??
    (env.no_proxy ?? env.NO_PROXY ?? '')
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean);
  const check = (url: string, where: string) => {
    const parsed = parseProxyUrl(url);
    if (typeof parsed === 'string')
      throw new MoatError('E_CONFIG_INVALID', `${where}: ${parsed}`, {
        hint: 'give an http://host:port proxy (credentials as http://user:pass@host:port), or unset it',
      });
    return url;
  };
  if (network.upstreamProxy) {
    const url = check(network.upstreamProxy, 'egress.upstreamProxy');
    return { http: url, https: url, noProxy };
  }
  const https = env.https_proxy ?? env.HTTPS_PROXY;
  const http = env.http_proxy ?? env.HTTP_PROXY;
  if (!https && !http) return undefined;
  return { ...(https ? { https: check(https, 'HTTPS_PROXY') } : {}), ...(http ? { http: check(http, 'HTTP_PROXY') } : {}), noProxy };
}

/**
 * Puts moat-why beside the denials file, in the folder the sandbox mounts read-only. Replaced
 * whole (rename) and only when it changed: a sandbox running it never reads half a script.
 */
async function shareMoatWhy(dir: string): Promise<void> {
  const bin = join(dir, 'bin');
  const file = join(bin, MOAT_WHY_NAME);
  if ((await readFile(file, 'utf8').catch(() => '')) === MOAT_WHY_SCRIPT) return;
  await mkdir(bin, { recursive: true, mode: 0o755 });
  // Explicit modes: the sandbox's user is not moat's, and moat's umask may be 077.
  await chmod(dir, 0o755);
  await chmod(bin, 0o755);
  await writeFile(`${file}.tmp`, MOAT_WHY_SCRIPT);
  await chmod(`${file}.tmp`, 0o755);
  await rename(`${file}.tmp`, file);
}

async function shareTrust(ctx: MoatContext, record: TaskRecord, taskDir: string, extras: string[]): Promise<{ taskCa?: TaskCa; trustFile?: string }> {
  // The task's own CA is made when some host's TLS is inspected: a bound secret's, or one with method/path rules.
  const intercept = record.secrets?.some((s) => s.intercept) === true || (record.egress?.rules?.length ?? 0) > 0;
  if (!intercept && extras.length === 0) return {};
  const taskCa = intercept ? createTaskCa(join(egressDir(taskDir), 'ca'), record.name) : undefined;
  const dir = socketDir(ctx.store.home, record.repoKey, record.name);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const own = [...extras, ...(taskCa ? [await readFile(taskCa.cert, 'utf8')] : [])].join('\n');
  // The public CAs come from Node's own copy of Mozilla's list, not from this host's bundle:
  // nothing of the host's trust enters the sandbox unless the user asked for it.
  await writeFile(join(dir, 'ca.pem'), `${own}\n`, { mode: 0o644 });
  await writeFile(join(dir, 'bundle.pem'), `${[...rootCertificates, own].join('\n')}\n`, { mode: 0o644 });
  let trustFile: string | undefined;
  if (extras.length > 0) {
    trustFile = join(egressDir(taskDir), 'trust.pem');
    await mkdir(egressDir(taskDir), { recursive: true, mode: 0o700 });
    await writeFile(trustFile, `${extras.join('\n')}\n`, { mode: 0o600 });
  }
  return { taskCa, trustFile };
}
