import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createTaskCa } from '../gateway/task-ca.js';
import { join } from 'node:path';
import { checkEgressRules } from '../config/effective.js';
import type { TaskRecord } from '../domain/task.js';
import { MoatError } from '../errors.js';
import { AUDIT_FILE, countAudit, readAudit, type AuditCursor, type AuditRecord } from '../gateway/audit.js';
import { reloadGateway } from '../gateway/gateway-process.js';
import { egressDir, policyFile, readTaskEgress, SOCKET_NAME, socketDir, writeTaskEgress } from '../gateway/task-egress.js';
import type { MoatContext } from './context.js';

/** Writes the task's egress file and makes the gateway listen for it. */
export async function openTaskEgress(ctx: MoatContext, record: TaskRecord): Promise<void> {
  const taskDir = ctx.store.taskDir(record.repoKey, record.name);
  const ca = record.secrets?.some((s) => s.intercept) ? await shareTaskCa(ctx, record, taskDir) : undefined;
  await writeTaskEgress(taskDir, {
    task: record.name,
    repoKey: record.repoKey,
    mode: record.network,
    allow: record.egress?.allow ?? [],
    deny: record.egress?.deny ?? [],
    socket: join(socketDir(ctx.store.home, record.repoKey, record.name), SOCKET_NAME),
    audit: auditFile(ctx, record),
    secrets: record.secrets,
    user: record.user,
    ...(ca ? { ca } : {}),
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
  const record = await ctx.store.require(repo.key, task);
  const taskDir = ctx.store.taskDir(record.repoKey, task);
  const current = await readTaskEgress(taskDir);
  const allow = [...new Set([...(current?.allow ?? record.egress?.allow ?? []), ...(change.allow ?? [])])].filter((h) => !(change.deny ?? []).includes(h));
  const deny = [...new Set([...(current?.deny ?? record.egress?.deny ?? []), ...(change.deny ?? [])])].filter((h) => !(change.allow ?? []).includes(h));
  const wasNone = record.network === 'none';
  const mode = wasNone && allow.length > 0 ? 'allowlist' : record.network;
  checkEgressRules(mode, allow, deny, 'egress rules');
  record.network = mode;
  record.egress = { allow, deny };
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

/** The sandbox's trust for interception: the task's CA alone, and a bundle of the usual CAs plus it. */
export const SANDBOX_CA_ENV = {
  SSL_CERT_FILE: '/moat/egress/bundle.pem',
  CURL_CA_BUNDLE: '/moat/egress/bundle.pem',
  REQUESTS_CA_BUNDLE: '/moat/egress/bundle.pem',
  GIT_SSL_CAINFO: '/moat/egress/bundle.pem',
  NODE_EXTRA_CA_CERTS: '/moat/egress/ca.pem',
};

async function shareTaskCa(ctx: MoatContext, record: TaskRecord, taskDir: string) {
  const ca = createTaskCa(join(egressDir(taskDir), 'ca'), record.name);
  const dir = socketDir(ctx.store.home, record.repoKey, record.name);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const cert = await readFile(ca.cert, 'utf8');
  const system = await readFile('/etc/ssl/certs/ca-certificates.crt', 'utf8').catch(() => '');
  await writeFile(join(dir, 'ca.pem'), cert, { mode: 0o644 });
  await writeFile(join(dir, 'bundle.pem'), `${system}\n${cert}`, { mode: 0o644 });
  return ca;
}
