import { spawn } from 'node:child_process';
import { createReadStream, openSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { PROXY_PORT } from '../domain/sandbox-spec.js';
import type { TaskRecord } from '../domain/task.js';
import type { ContainerEngine } from '../engine/engine.js';
import { MoatError } from '../errors.js';
import { DENIALS_NAME, MOAT_WHY_NAME, MOAT_WHY_SCRIPT, SANDBOX_BIN_DIR, SANDBOX_DENIALS_FILE } from '../gateway/denials.js';
import { egressDir, SOCKET_NAME, socketDir } from '../gateway/task-egress.js';
import type { MoatContext } from './context.js';
import { processAlive } from '../state/process-alive.js';
import { egressBridged } from './task-container.js';

/**
 * The way out for a sandbox on an engine that cannot mount moat's gateway socket (a remote
 * engine), or that cannot connect a mounted one (gVisor). The sandbox keeps `network: none`; its proxy port is a listener inside it whose every
 * connection is carried over the engine's own exec streams to moat's host, where it meets the
 * gateway's socket for the task, exactly as the local relay's connections do: the gateway applies
 * the policy, adds the secrets on the way out (they never enter the sandbox) and audits each attempt.
 *
 * Inside (both scripts constant, run as the sandbox user): a control exec runs socat on the proxy
 * port; each accepted connection's child makes a pair of FIFOs in /tmp/.moat-egress and announces
 * its number on the control exec's output (the connection is duplicated to fd 4 first: a
 * background command of sh reads /dev/null unless told otherwise). Outside, the bridge (a detached process per task, like
 * the gateway) reads the numbers and, for each, opens one exec that joins the FIFOs to its own
 * stdin/stdout, and one connection to the gateway. All the sandbox can do with this is make
 * connections to the gateway, which it could anyway: a forged number only makes another.
 */
/**
 * socat's copy size between the agent's connection and the FIFOs' cat (its default is 8 KiB). Under
 * gVisor's ptrace platform every read and write of every process in the sandbox traps, so bytes per
 * call decide throughput: 128 KiB took the bridge from 4 to 17 MiB/s up and 4 to 11 MiB/s down
 * (bench/gateway.js with BENCH_GVISOR=1, docs/benchmarks.md).
 */
const SOCAT_BLOCK = 131072;

const LISTEN_SCRIPT = `
umask 077
mkdir -p /tmp/.moat-egress || exit 1
exec 3>&1
exec socat -b ${SOCAT_BLOCK} TCP-LISTEN:${PROXY_PORT},bind=127.0.0.1,reuseaddr,fork,backlog=4096 SYSTEM:'i=$$; d=/tmp/.moat-egress; mkfifo "$d/$i.up" "$d/$i.down" || exit 1; echo "$i" >&3; exec 4<&0; cat <&4 > "$d/$i.up" & c=$!; cat "$d/$i.down"; kill $c 2>/dev/null; rm -f "$d/$i.up" "$d/$i.down"'
`;

/** One connection: the FIFOs of child $1 joined to this exec's streams. */
const CONNECTION_SCRIPT = `
d=/tmp/.moat-egress
cat "$d/$1.up" &
cat > "$d/$1.down"
wait
`;

/** At most this many connections carried at once for one task (a sandbox announcing numbers in a loop gets no more). */
const MAX_CONNECTIONS = 512;

const BRIDGE = fileURLToPath(new URL('../../dist/service/egress-bridge-main.js', import.meta.url));

function pidFile(ctx: MoatContext, record: TaskRecord): string {
  return join(egressDir(ctx.store.taskDir(record.repoKey, record.name)), 'bridge.pid');
}

async function runningBridge(ctx: MoatContext, record: TaskRecord): Promise<{ pid: number; container: string } | undefined> {
  const text = await readFile(pidFile(ctx, record), 'utf8').catch(() => '');
  const [pid, container] = text.trim().split(' ');
  if (!pid || !/^[0-9]+$/.test(pid) || !container) return undefined;
  // The pid may have been reused: the bridge's command line names the task's container.
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!processAlive(Number(pid)) || !cmdline.includes(container)) return undefined;
  return { pid: Number(pid), container };
}

/** Makes sure the task's running container has its bridge (after `up`, `reset`, a crash, a reboot). */
export async function ensureBridge(ctx: MoatContext, record: TaskRecord): Promise<void> {
  if (!egressBridged(record) || !record.containerId) return;
  const running = await runningBridge(ctx, record);
  if (running?.container === record.containerId) return;
  if (running) process.kill(running.pid, 'SIGTERM');
  const log = openSync(join(egressDir(ctx.store.taskDir(record.repoKey, record.name)), 'bridge.log'), 'a', 0o600);
  const pass = Object.fromEntries(
    Object.entries(ctx.env).filter(([key]) =>
      /^(PATH|HOME|DOCKER_HOST|DOCKER_TLS_VERIFY|DOCKER_CERT_PATH|MOAT_ENGINE|MOAT_ENGINE_SOCKET|MOAT_CONFIG|SSH_AUTH_SOCK|XDG_RUNTIME_DIR|KUBECONFIG|MOAT_K8S_CONTEXT|MOAT_K8S_NAMESPACE|MOAT_K8S_IMAGE_ENGINE)$/.test(
        key,
      ),
    ),
  );
  const child = spawn(process.execPath, [BRIDGE, ctx.store.home, record.repoKey, record.name, record.containerId], {
    detached: true,
    stdio: ['ignore', log, log],
    env: pass,
  });
  child.unref();
  await writeFile(pidFile(ctx, record), `${child.pid} ${record.containerId}\n`, { mode: 0o600 });
  // The caller's next command may connect at once: wait until the proxy port listens (the
  // kernel's socket table, read as the sandbox user; /bin/grep, not what the agent put on PATH).
  const engine = await ctx.engine();
  const listening = ['/bin/grep', '-q', `0100007F:${PROXY_PORT.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A`, '/proc/net/tcp'];
  for (let waited = 0; waited < BRIDGE_START_MS; waited += 50) {
    const probe = await engine.execCapture(record.containerId, { cmd: listening, user: `${record.user.uid}:${record.user.gid}` }, 1024).catch(() => undefined);
    if (probe?.exitCode === 0) return;
    if (!processAlive(child.pid!)) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new MoatError('E_ENGINE_FAILED', "the sandbox's way out to the gateway did not start", {
    hint: `see ${join(egressDir(ctx.store.taskDir(record.repoKey, record.name)), 'bridge.log')}; \`moat reset ${record.name}\` starts it again`,
  });
}

/** How long a new bridge may take to listen in the sandbox. */
const BRIDGE_START_MS = 15_000;

/** After a task's container started on an engine without host mounts: its trust files and its bridge. */
export async function connectSandbox(ctx: MoatContext, engine: ContainerEngine, id: string, record: TaskRecord): Promise<void> {
  if (!egressBridged(record)) return;
  await pushTrust(ctx, engine, id, record);
  await ensureBridge(ctx, { ...record, containerId: id });
}

/** Stops the task's bridge (down, rm): its connections end with it. */
export async function stopBridge(ctx: MoatContext, record: TaskRecord): Promise<void> {
  const running = await runningBridge(ctx, record);
  if (running) process.kill(running.pid, 'SIGTERM');
  await rm(pidFile(ctx, record), { force: true });
}

/**
 * Puts the sandbox's trust files (the task's CA, the CAs the user trusts) where SANDBOX_CA_ENV
 * says, in the sandbox's own tmpfs: the local path mounts them from the gateway's folder.
 */
export async function pushTrust(ctx: MoatContext, engine: ContainerEngine, id: string, record: TaskRecord): Promise<void> {
  const dir = socketDir(ctx.store.home, record.repoKey, record.name);
  for (const file of ['ca.pem', 'bundle.pem']) {
    const source = join(dir, file);
    if (
      !(await readFile(source).then(
        () => true,
        () => false,
      ))
    )
      continue;
    const sink = new PassThrough().resume();
    const code = await engine.exec(
      id,
      { cmd: ['sh', '-c', 'cat > "$0"', `/moat/egress/${file}`], user: `${record.user.uid}:${record.user.gid}` },
      { stdin: createReadStream(source), stdout: sink, stderr: sink },
    );
    if (code !== 0) throw new MoatError('E_ENGINE_FAILED', `could not put ${file} into the sandbox`, { hint: 'moat reset the task' });
  }
  // moat-why, where the local path mounts it (the folder is the sandbox's own tmpfs here).
  const sink = new PassThrough().resume();
  const code = await engine.exec(
    id,
    {
      cmd: ['sh', '-c', 'mkdir -p "$0" && cat > "$0/.$1" && chmod 755 "$0/.$1" && mv -f "$0/.$1" "$0/$1"', SANDBOX_BIN_DIR, MOAT_WHY_NAME],
      user: `${record.user.uid}:${record.user.gid}`,
    },
    { stdin: Readable.from([MOAT_WHY_SCRIPT]), stdout: sink, stderr: sink },
  );
  if (code !== 0) throw new MoatError('E_ENGINE_FAILED', `could not put ${MOAT_WHY_NAME} into the sandbox`, { hint: 'moat reset the task' });
}

/**
 * Keeps the sandbox's copy of the denials file current: the gateway writes it on moat's host, the
 * sandbox reads it in its own tmpfs. Polled (it changes only on a refusal) and written whole.
 * The sandbox could overwrite its copy; it would only mislead itself.
 */
function mirrorDenials(engine: ContainerEngine, input: { denials: string; container: string; user: string }): void {
  let shown = -1;
  let busy = false;
  const push = async () => {
    if (busy) return;
    busy = true;
    try {
      for (;;) {
        const mtime = await stat(input.denials).then(
          (s) => s.mtimeMs,
          () => -1,
        );
        if (mtime === shown || mtime === -1) return;
        const text = await readFile(input.denials);
        const sink = new PassThrough().resume();
        await engine
          .exec(
            input.container,
            { cmd: ['sh', '-c', 'rm -f "$0.tmp" && cat > "$0.tmp" && mv -f "$0.tmp" "$0"', SANDBOX_DENIALS_FILE], user: input.user },
            { stdin: Readable.from([text]), stdout: sink, stderr: sink },
          )
          .catch(() => undefined);
        shown = mtime;
      }
    } finally {
      busy = false;
    }
  };
  setInterval(() => void push().catch(() => undefined), DENIALS_POLL_MS).unref();
  void push().catch(() => undefined);
}

const DENIALS_POLL_MS = 300;

/** The bridge process itself (egress-bridge-main.ts): runs until the container is gone. */
export async function runBridge(engine: ContainerEngine, input: { gatewaySocket: string; container: string; user: string }): Promise<void> {
  mirrorDenials(engine, { denials: join(dirname(input.gatewaySocket), DENIALS_NAME), container: input.container, user: input.user });
  let open = 0;
  const carry = (child: string) => {
    if (open >= MAX_CONNECTIONS) return;
    open += 1;
    const gateway = connect(input.gatewaySocket);
    const stdin = new PassThrough();
    gateway.on('data', (chunk: Buffer) => stdin.write(chunk));
    gateway.on('end', () => stdin.end());
    gateway.on('error', () => stdin.end());
    const out = new Writable({
      write(chunk: Buffer, _encoding, done) {
        if (gateway.writable) gateway.write(chunk, () => done());
        else done();
      },
    });
    engine
      .exec(
        input.container,
        { cmd: ['sh', '-c', CONNECTION_SCRIPT, 'moat-egress', child], user: input.user },
        { stdin, stdout: out, stderr: new PassThrough().resume() },
      )
      .catch(() => undefined)
      .finally(() => {
        open -= 1;
        gateway.end();
      });
  };
  for (;;) {
    let pending = '';
    const announcements = new Writable({
      write(chunk: Buffer, _encoding, done) {
        pending += chunk.toString('latin1');
        const lines = pending.split('\n');
        pending = lines.pop()!.slice(-16);
        for (const line of lines) if (/^[0-9]{1,9}$/.test(line)) carry(line);
        done();
      },
    });
    await engine
      .exec(
        input.container,
        { cmd: ['sh', '-c', LISTEN_SCRIPT, 'moat-egress-listen'], user: input.user },
        { stdout: announcements, stderr: new PassThrough().resume() },
      )
      .catch(() => undefined);
    const info = await engine.inspectContainer(input.container).catch(() => undefined);
    if (!info?.running) return;
    // The listener ended (the agent may kill it): start it again.
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

export function gatewaySocketOf(home: string, repoKey: string, task: string): string {
  return join(socketDir(home, repoKey, task), SOCKET_NAME);
}
