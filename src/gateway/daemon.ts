import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { buildPolicy, parseRule, type EgressPolicy, type EgressRule } from '../domain/egress-policy.js';
import { buildRequestRules } from '../domain/request-rules.js';
import { holdForAnswer, ruleFor } from './pending-queue.js';
import { appendAudit, auditMaxBytes } from './audit.js';
import { DENIALS_NAME, recordDenial } from './denials.js';
import type { UpstreamProxyConfig } from './upstream-proxy.js';
import { redact } from '../domain/redact.js';
import { EgressGateway, systemResolver } from './egress-gateway.js';
import { HANDOFF_NAME, policyFile, type TaskEgressFile } from './task-egress.js';
import { TaskStore } from '../state/task-store.js';
import { ListenerHandoff } from './listener-handoff.js';
import { fdPass } from './native.js';
import type { BoundSecret } from '../domain/bound-secret.js';
import { leafFor, type TaskCa } from './task-ca.js';

/**
 * The gateway process: one per moat home, serving every task with a network through sockets of
 * its own: the listener each sandbox hands over (the proxy port on the sandbox's loopback), and a
 * unix socket for sandboxes that relay instead. It runs on the host, outside every sandbox; moat
 * starts it when a task needs it and it leaves when no task does. `reload` on the control socket
 * makes it rescan the tasks.
 */
const home = process.argv[2];
if (!home) {
  process.stderr.write('usage: daemon.js <moat home>\n');
  process.exit(2);
}
const controlPath = join(home, 'gateway', 'control.sock');
const dnsServers = process.env.MOAT_GATEWAY_DNS ? process.env.MOAT_GATEWAY_DNS.split(',') : undefined;
const extraCa = process.env.MOAT_GATEWAY_CA ? [readFileSync(process.env.MOAT_GATEWAY_CA, 'utf8')] : [];
/** Each task's audit log is rotated at this size (audit.ts): a sandbox cannot fill the host's disk with it. */
const auditMax = auditMaxBytes(process.env);
const gateway = new EgressGateway(systemResolver(dnsServers), 10_000, extraCa);
/** Secret values per task socket: in memory only, handed over by moat on the control socket. */
const secretValues = new Map<string, Record<string, string>>();

/** Without the addon there is no handover: sandboxes then relay to the task's socket (socat). */
const native = fdPass();

interface Listener {
  server: Server;
  /** Where the sandbox hands over the listener it made on its own loopback. */
  handoff?: ListenerHandoff;
  file: string;
  cached?: Served & { mtimeMs: number };
  /** Connections of this task held for a human's answer now (egress.ask). */
  held: number;
}
const listeners = new Map<string, Listener>();

interface Served {
  policy: EgressPolicy;
  audit: string;
  task: string;
  repoKey?: string;
  askSeconds?: number;
  secrets: BoundSecret[];
  ca?: TaskCa;
  upstream?: UpstreamProxyConfig;
  trustCa?: string[];
  user?: { uid: number; gid: number };
}

/** The task's policy as of now; an unreadable or invalid file means no network (fail closed). */
function current(listener: Listener): Served {
  const closed = { policy: { mode: 'none' as const, allow: [], deny: [] }, audit: join(dirname(listener.file), 'audit.jsonl'), task: '?', secrets: [] };
  try {
    const mtimeMs = statSync(listener.file).mtimeMs;
    if (listener.cached?.mtimeMs === mtimeMs) return listener.cached;
    const value = JSON.parse(readFileSync(listener.file, 'utf8')) as TaskEgressFile;
    const policy = buildPolicy(value.mode, value.allow, value.deny, value.allowAddresses ?? []);
    const requests = buildRequestRules(value.rules ?? []);
    if ('errors' in policy || 'errors' in requests) return { ...closed, task: value.task };
    if (requests.length > 0) policy.requests = requests;
    const trustCa = value.trustCa ? [readFileSync(value.trustCa, 'utf8')] : undefined;
    listener.cached = {
      mtimeMs,
      policy,
      audit: value.audit,
      task: value.task,
      repoKey: value.repoKey,
      askSeconds: value.askSeconds,
      secrets: value.secrets ?? [],
      ca: value.ca,
      upstream: value.upstream,
      trustCa,
      user: value.user,
    };
    return listener.cached;
  } catch {
    return closed;
  }
}

function taskFiles(): string[] {
  return new TaskStore(home!)
    .taskDirsSync()
    .map(policyFile)
    .filter((file) => existsSync(file));
}

async function reload(): Promise<number> {
  const wanted = new Map<string, string>();
  for (const file of taskFiles()) {
    try {
      const value = JSON.parse(readFileSync(file, 'utf8')) as TaskEgressFile;
      if (value.mode !== 'none') wanted.set(value.socket, file);
    } catch {
      // A half-written file is picked up at the next reload.
    }
  }
  for (const [socket, listener] of listeners) {
    if (!wanted.has(socket)) {
      listener.server.close();
      listener.handoff?.close();
      gateway.release(listener);
      listeners.delete(socket);
      removeSockets(socket);
    }
  }
  for (const [socket, file] of wanted) {
    if (listeners.has(socket)) continue;
    const owner = (JSON.parse(readFileSync(file, 'utf8')) as TaskEgressFile).user;
    mkdirSync(dirname(socket), { recursive: true, mode: 0o755 });
    removeSockets(socket);
    // Half-open connections pass through: a client that has sent everything (FIN) still gets its answer.
    const listener: Listener = { server: createServer({ allowHalfOpen: true }), file, held: 0 };
    const serve = (client: Socket) => {
      const now = current(listener);
      const values = () => secretValues.get(socket) ?? {};
      // Hosts a human allowed for this one connection (egress.ask, "allow once").
      const once: EgressRule[] = [];
      void gateway
        .handle(client, {
          task: now.task,
          scope: listener,
          policy: () => (once.length === 0 ? current(listener).policy : { ...current(listener).policy, allow: [...current(listener).policy.allow, ...once] }),
          ask: now.askSeconds === undefined ? undefined : (request) => askHuman(listener, now, request, once),
          // Every audit line passes through redaction of the task's secret values; a denial is
          // also kept for the sandbox to read (its own attempts, nothing else).
          audit: (record) => {
            appendAudit(current(listener).audit, record, Object.values(values()), auditMax);
            if (record.decision === 'denied') {
              try {
                recordDenial(
                  join(dirname(socket), DENIALS_NAME),
                  { ...record, host: redact(record.host, Object.values(values())), rule: redact(record.rule, Object.values(values())) },
                  current(listener).user,
                );
              } catch {
                // The folder is gone with the task: nothing to tell.
              }
            }
          },
          upstream: now.upstream,
          trustCa: now.trustCa,
          secrets: () => current(listener).secrets.map((secret) => ({ secret, value: values()[secret.name] })),
          leaf: current(listener).ca ? (host) => leafFor(current(listener).ca!, host) : undefined,
        })
        .catch(() => client.destroy());
    };
    listener.server.on('connection', serve);
    await new Promise<void>((resolve, reject) => {
      listener.server.once('error', reject);
      // Unix sockets refuse connects past the backlog (no retry as with TCP): room for bursts.
      listener.server.listen({ path: socket, backlog: 4096 }, () => resolve());
    });
    const paths = [socket];
    if (native) {
      listener.handoff = new ListenerHandoff(native, serve);
      await listener.handoff.listen(handoffPath(socket));
      paths.push(handoffPath(socket));
    }
    // The sandbox's user alone may connect: another account on this host must not borrow the
    // task's grants (or its bound secrets) through the socket.
    for (const path of paths) {
      if (owner && process.getuid?.() === 0) chownSync(path, owner.uid, owner.gid);
      chmodSync(path, 0o600);
    }
    listeners.set(socket, listener);
  }
  return listeners.size;
}

/** At most this many connections of one task wait for answers at once: a sandbox cannot flood the queue. */
const MAX_HELD = 16;

async function askHuman(
  listener: Listener,
  served: Served,
  request: { method: string; host: string; port: number },
  once: EgressRule[],
): Promise<{ allowed: boolean; rule: string }> {
  const seconds = served.askSeconds ?? 60;
  if (listener.held >= MAX_HELD) return { allowed: false, rule: `not in allowlist: ${request.host} (${MAX_HELD} requests already wait for an answer)` };
  listener.held += 1;
  try {
    const taskDir = dirname(dirname(listener.file));
    const answer = await holdForAnswer(taskDir, { task: served.task, repoKey: served.repoKey ?? '', ...request }, seconds * 1000);
    if (answer.answer === 'deny')
      return {
        allowed: false,
        rule:
          answer.by === 'timeout'
            ? `not in allowlist: ${request.host}; no answer within ${seconds}s (egress.ask)`
            : `not in allowlist: ${request.host}; denied by a human (${answer.by})`,
      };
    if (answer.answer === 'once') {
      const rule = parseRule(ruleFor(request.host, request.port));
      if (typeof rule !== 'string') once.push(rule);
    }
    return {
      allowed: true,
      rule: `${answer.answer === 'once' ? 'allowed once' : answer.answer === 'task' ? 'allowed for the task' : 'allowed always'} by a human (${answer.by})`,
    };
  } catch {
    return { allowed: false, rule: `not in allowlist: ${request.host}; the request could not be queued` };
  } finally {
    listener.held -= 1;
  }
}

function handoffPath(socket: string): string {
  return join(dirname(socket), HANDOFF_NAME);
}

function removeSockets(socket: string): void {
  for (const path of [socket, handoffPath(socket)]) {
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  }
}

let idleTimer: NodeJS.Timeout | undefined;
function exitWhenIdle(): void {
  clearTimeout(idleTimer);
  if (listeners.size === 0) idleTimer = setTimeout(() => process.exit(0), 30_000);
}

mkdirSync(dirname(controlPath), { recursive: true, mode: 0o700 });
if (existsSync(controlPath)) unlinkSync(controlPath);
const control = createServer((socket) => {
  socket.on('error', () => undefined);
  let buffered = '';
  socket.on('data', (chunk) => {
    buffered += chunk.toString();
    if (buffered.includes('\n')) handleCommand(buffered);
  });
  const handleCommand = (data: string) => {
    socket.removeAllListeners('data');
    const [command, target, payload] = data.trim().split(' ');
    if (command === 'secrets' && target && payload) {
      // Merged: a value moat could not read this time stays as it was.
      secretValues.set(target, {
        ...(secretValues.get(target) ?? {}),
        ...(JSON.parse(Buffer.from(payload, 'base64').toString('utf8')) as Record<string, string>),
      });
      return void socket.end('ok\n');
    }
    if (command !== 'reload') return void socket.end('error unknown command\n');
    reload()
      .then((count) => {
        socket.end(`ok ${count}\n`);
        exitWhenIdle();
      })
      .catch((error: Error) => socket.end(`error ${error.message}\n`));
  };
});
control.listen(controlPath, () => {
  chmodSync(controlPath, 0o600);
  writeFileSync(join(home, 'gateway', 'pid'), String(process.pid));
  void reload().then(exitWhenIdle);
});
// A home that is gone (removed by the user or a test) has no tasks left to serve.
setInterval(() => {
  if (!existsSync(join(home, 'gateway'))) process.exit(0);
}, 5_000).unref();
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    for (const socket of listeners.keys()) removeSockets(socket);
    process.exit(0);
  });
}
