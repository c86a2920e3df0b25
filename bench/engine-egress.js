// Egress through the engine (issue 13): the way out of a sandbox on an engine that cannot mount
// moat's gateway socket (a remote one) is the exec bridge (src/service/egress-bridge.ts): the proxy
// port inside is a socat listener whose every connection is carried over an exec stream of the
// engine to the gateway. The local path is the one local tasks use: the listener handed over to the
// gateway by moat's helper, through the bind-mounted socket. Both run here as containers of the
// local engine, same image and flags (no network), against the same gateway process, and the same
// client runs inside each (Node, timing itself): so the only difference is the path. Rounds
// alternate the two. With BENCH_GVISOR=1 (runsc registered: scripts/setup-gvisor.sh) a third path
// alternates with them: the same exec bridge into a container under gVisor (`--runtime runsc`), the
// way out of every sandbox with `isolation: gvisor` (which cannot connect a mounted host socket).
// Called by bench/gateway.js; not a test: nothing asserts a time.
import { execFile, execFileSync, fork } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sandboxSpec } from '../dist/domain/sandbox-spec.js';
import { HANDOFF_BINARY } from '../dist/gateway/native.js';

/** Runs inside the sandbox: one measurement through the proxy port, printed as JSON. */
const CLIENT = `
const net = require('node:net');
const tls = require('node:tls');
const [mode, target, bytes, count] = process.argv.slice(1);
const tunnel = (to) => new Promise((resolve, reject) => {
  const s = net.connect(3128, '127.0.0.1');
  s.on('error', reject);
  s.once('connect', () => s.write('CONNECT ' + to + ' HTTP/1.1\\r\\nHost: ' + to + '\\r\\n\\r\\n'));
  let head = '';
  const onData = (chunk) => {
    head += chunk.toString('latin1');
    if (!head.includes('\\r\\n\\r\\n')) return;
    s.off('data', onData);
    if (!/^HTTP\\/1\\.[01] 200/.test(head)) return reject(new Error(head.split('\\r\\n')[0]));
    resolve(s);
  };
  s.on('data', onData);
});
const secure = (s) => new Promise((resolve, reject) => {
  const t = tls.connect({ socket: s, servername: 'bench.test', rejectUnauthorized: false }, () => resolve(t));
  t.on('error', reject);
});
const now = () => Number(process.hrtime.bigint()) / 1e9;
(async () => {
  if (mode === 'upload') {
    const s = await tunnel(target);
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const start = now();
    let sent = 0;
    await new Promise((resolve) => {
      const pump = () => {
        while (sent < Number(bytes)) {
          sent += chunk.length;
          if (!s.write(chunk)) return s.once('drain', pump);
        }
        s.end(resolve);
      };
      pump();
    });
    console.log(JSON.stringify({ bytesPerSecond: sent / (now() - start) }));
    s.destroy();
  } else if (mode === 'download') {
    const s = await secure(await tunnel(target));
    const start = now();
    let received = 0;
    await new Promise((resolve) => {
      s.on('data', (chunk) => (received += chunk.length));
      s.once('end', resolve);
      s.write('get:' + bytes);
    });
    console.log(JSON.stringify({ bytesPerSecond: received / (now() - start) }));
    s.destroy();
  } else {
    const samples = [];
    for (let i = 0; i < Number(count); i += 1) {
      const start = now();
      const s = await secure(await tunnel(target));
      await new Promise((resolve) => { s.once('data', resolve); s.write('ping'); });
      samples.push((now() - start) * 1000);
      s.destroy();
    }
    samples.sort((a, b) => a - b);
    console.log(JSON.stringify({ p50: samples[Math.floor(samples.length / 2)], p99: samples[Math.floor(samples.length * 0.99)] }));
  }
})().catch((error) => { console.error(String(error)); process.exit(1); });
`;

const docker = (args) => execFileSync('docker', args, { encoding: 'utf8' }).trim();
// Asynchronous: the upstream and the sink are served by the benchmark's own event loop.
const dockerAsync = async (args) => (await promisify(execFile)('docker', args, { encoding: 'utf8', timeout: 600_000 })).stdout.trim();

/** The image of moat's node template (it has node and socat), built by moat itself if need be. */
function nodeImage(bin, scratch) {
  if (process.env.BENCH_NODE_IMAGE) return process.env.BENCH_NODE_IMAGE;
  const repo = join(scratch, 'engine-repo');
  const env = { ...process.env, MOAT_HOME: join(scratch, 'engine-home'), MOAT_CONFIG: join(scratch, 'engine-config.yaml'), MOAT_SERVER: 'off' };
  const gitEnv = { ...env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b.invalid', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b.invalid' };
  execFileSync('git', ['init', '-q', repo]);
  execFileSync('git', ['commit', '-q', '--allow-empty', '-m', 'init'], { cwd: repo, env: gitEnv });
  const made = JSON.parse(execFileSync(process.execPath, [bin, 'up', '--task', 'img', '-t', 'node', '--json'], { cwd: repo, env, encoding: 'utf8' }));
  execFileSync(process.execPath, [bin, 'rm', '--force', 'img'], { cwd: repo, env });
  return made.image;
}

/** Waits until the container's proxy port listens (the kernel's socket table, as moat's bridge checks it). */
async function listening(id) {
  for (let i = 0; ; i += 1) {
    try {
      await dockerAsync(['exec', id, '/bin/grep', '-q', '0100007F:0C38 00000000:0000 0A', '/proc/net/tcp']);
      return;
    } catch {
      if (i === 200) throw new Error(`the proxy port of ${id.slice(0, 12)} does not listen`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/**
 * The paths' figures, `rounds` alternating rounds of: a plain TCP upload to `sink`, a TLS
 * download from `upstream`, `latencyRounds` connect+CONNECT+TLS+ping; medians.
 * `egressDir` holds the gateway's sockets (p.sock for the relay, h.sock for the handover).
 */
export async function engineEgress({ bin, scratch, egressDir, sink, upstream, bytes, rounds, latencyRounds }) {
  const image = nodeImage(bin, scratch);
  const hardening = ['--network', 'none', '--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--init'];
  // As root inside (no capability at all): the gateway's sockets here are root's, as a task's are its user's.
  const common = ['run', '-d', '--label', 'moat.bench=engine-egress', '--user', '0:0', '--tmpfs', '/tmp:rw,exec,size=64m', ...hardening];
  const keepAlive = sandboxSpec({
    containerName: 'b',
    taskName: 'b',
    image,
    workspace: { kind: 'host', path: egressDir },
    uid: 0,
    gid: 0,
    limits: { timeoutSeconds: 0, tmpBytes: 64 * 1024 ** 2, homeBytes: 64 * 1024 ** 2 },
    env: {},
    labels: {},
    egressSocketDir: egressDir,
    handoffHelper: HANDOFF_BINARY,
  }).command;
  const containers = [];
  const bridges = [];
  const cleanup = () => {
    for (const bridge of bridges) bridge.kill('SIGKILL');
    if (containers.length > 0) execFileSync('docker', ['rm', '-f', ...containers], { stdio: 'ignore' });
    containers.length = 0;
  };
  process.on('exit', cleanup);
  // Interrupted, the exit handlers (this one, gateway.js's) still run.
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130));
  try {
    const local = docker([...common, '-v', `${egressDir}:/moat/egress:ro`, '-v', `${HANDOFF_BINARY}:/moat/bin/moat-handoff:ro`, image, ...keepAlive]);
    containers.push(local);
    const bridged = docker([...common, image, 'sleep', 'infinity']);
    containers.push(bridged);
    bridges.push(
      fork(join(import.meta.dirname, 'engine-bridge.js'), [join(egressDir, 'p.sock'), bridged, '0:0'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }),
    );
    if (process.env.BENCH_DEBUG) process.stderr.write(`engine-egress: containers ${containers.map((id) => id.slice(0, 12)).join(' ')}\n`);
    // Both proxy ports listen (the kernel's socket table, as moat's bridge checks it).
    for (const id of containers) await listening(id);
    const paths = { 'local: handed-over listener, bind-mounted socket': local, 'engine: exec bridge (remote engines)': bridged };
    if (process.env.BENCH_GVISOR === '1') {
      const gvisor = docker([...common.slice(0, 2), '--runtime', 'runsc', ...common.slice(2), image, 'sleep', 'infinity']);
      containers.push(gvisor);
      bridges.push(
        fork(join(import.meta.dirname, 'engine-bridge.js'), [join(egressDir, 'p.sock'), gvisor, '0:0'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }),
      );
      await listening(gvisor);
      paths['gVisor: exec bridge (isolation: gvisor, runsc)'] = gvisor;
    }
    const measure = async (id, mode, target, count = 0) => {
      if (process.env.BENCH_DEBUG) process.stderr.write(`engine-egress: ${id.slice(0, 12)} ${mode}\n`);
      return JSON.parse(await dockerAsync(['exec', id, 'node', '-e', CLIENT, mode, target, String(bytes), String(count)]));
    };
    const rows = Object.fromEntries(Object.keys(paths).map((name) => [name, { upload: [], download: [], p50: [], p99: [] }]));
    for (let round = 0; round < rounds; round += 1) {
      for (const [name, id] of Object.entries(paths)) {
        rows[name].upload.push((await measure(id, 'upload', sink)).bytesPerSecond);
        rows[name].download.push((await measure(id, 'download', upstream)).bytesPerSecond);
        const latency = await measure(id, 'latency', upstream, latencyRounds);
        rows[name].p50.push(latency.p50);
        rows[name].p99.push(latency.p99);
      }
    }
    return rows;
  } finally {
    cleanup();
  }
}
