// Egress gateway benchmark (issue 4): on loopback, side by side in one run, a direct connection,
// moat's gateway as a program in a sandbox reaches it, and Debian's squid as a plain CONNECT
// proxy. moat's path is the one a sandbox uses: the program connects to the proxy port on its
// loopback, where moat's helper has handed the listening socket to the gateway (the gateway
// accepts it directly). A second moat row is the fallback for installs without the native parts:
// the same port served by socat with the sandbox's own arguments, relaying to the unix socket.
// Each round: a TLS upload and download (what egress carries; the benchmark's process, doing the
// TLS of both ends, is then the limit), a plain TCP upload through a name:port rule (the relay is
// then the limit), and connect + ping latency; 1 GiB transfers, then 1,000 concurrent connections
// held. Not a test: nothing asserts a time.
import { execFileSync, fork, spawn } from 'node:child_process';
import { sandboxSpec } from '../dist/domain/sandbox-spec.js';
import { HANDOFF_BINARY } from '../dist/gateway/native.js';
import { engineEgress } from './engine-egress.js';
import { createServer, connect } from 'node:net';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const GIB = 1024 ** 3;
const transferBytes = Number(process.env.BENCH_BYTES ?? GIB);
const latencyRounds = Number(process.env.BENCH_LATENCY_ROUNDS ?? 400);
const concurrent = Number(process.env.BENCH_CONNECTIONS ?? 1000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'moat-gw-bench-'));
// squid drops to its own user after start: it must be able to read its files here.
chmodSync(dir, 0o755);

// Upstream, over TLS as real egress is: sinks what it is sent (upload), sends the transfer size
// on "get" (download), and answers "pong" to each "ping" (latency). Every path carries the same
// TLS bytes; the proxies only splice them.
execFileSync(
  'openssl',
  ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-subj', '/CN=bench.test', '-days', '1'],
  { stdio: 'ignore' },
);
const upstream = createTlsServer({ key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) }, (socket) => {
  socket.on('data', (chunk) => {
    if (chunk.length === 4 && chunk.toString() === 'ping') socket.write('pong');
    // "get" sends the transfer size, "get:N" N bytes (bench/engine-egress.js's smaller transfers).
    const get = chunk.length <= 16 ? /^get(?::([0-9]+))?$/.exec(chunk.toString()) : null;
    if (get) {
      const size = get[1] ? Number(get[1]) : transferBytes;
      const block = Buffer.alloc(1024 * 1024, 7);
      let sent = 0;
      const pump = () => {
        while (sent < size) {
          sent += block.length;
          if (!socket.write(block)) return socket.once('drain', pump);
        }
        socket.end();
      };
      pump();
    }
  });
  socket.on('error', () => undefined);
});
await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
const upPort = upstream.address().port;
const target = `bench.test:${upPort}`;
// And a plain TCP sink, for an upload without TLS: the benchmark's process then has little to do,
// and the relay itself becomes the limit. The policy admits it by name and port (any protocol).
const sink = createServer((socket) => {
  socket.resume();
  socket.on('error', () => undefined);
});
await new Promise((r) => sink.listen(0, '127.0.0.1', r));
const sinkPort = sink.address().port;

// moat's gateway in a process of its own, as the daemon runs it (resolving bench.test to
// loopback, which the policy allows by CIDR). In the benchmark's own process it would share an
// event loop with the client and the upstream, which flatters nobody fairly.
const gatewaySocket = join(dir, 'p.sock');
const handoffSocket = join(dir, 'h.sock');
const squidPort = 31280 + Math.floor(Math.random() * 1000);
// An HTTPS upstream for the requests rows (method and path rules need HTTP): its certificate from
// a CA of the benchmark's, which the gateway trusts, as it would a public one.
const runSsl = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
runSsl([
  'req',
  '-x509',
  '-newkey',
  'ec',
  '-pkeyopt',
  'ec_paramgen_curve:P-256',
  '-nodes',
  '-keyout',
  'rca.key',
  '-out',
  'rca.pem',
  '-subj',
  '/CN=bench CA',
  '-days',
  '1',
]);
runSsl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'rleaf.key', '-out', 'rleaf.csr', '-subj', '/CN=bench.test']);
writeFileSync(join(dir, 'rext.cnf'), 'subjectAltName=DNS:bench.test\n');
runSsl([
  'x509',
  '-req',
  '-in',
  'rleaf.csr',
  '-CA',
  'rca.pem',
  '-CAkey',
  'rca.key',
  '-CAcreateserial',
  '-out',
  'rleaf.pem',
  '-days',
  '1',
  '-extfile',
  'rext.cnf',
]);
const web = createHttpsServer({ key: readFileSync(join(dir, 'rleaf.key')), cert: readFileSync(join(dir, 'rleaf.pem')), keepAlive: true }, (req, res) => {
  req.resume();
  req.on('end', () => res.end('ok'));
});
await new Promise((r) => web.listen(0, '127.0.0.1', r));
const webTarget = `bench.test:${web.address().port}`;

const gatewayProcess = fork(
  join(import.meta.dirname, 'gateway-process.js'),
  [gatewaySocket, handoffSocket, String(sinkPort), String(squidPort), join(dir, 'rca.pem'), join(dir, 'task-ca')],
  { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
);
const { viaSquidPort, tunnelPort, rulesPort } = await new Promise((resolve, reject) => {
  gatewayProcess.once('message', resolve);
  gatewayProcess.once('exit', () => reject(new Error('the gateway process failed')));
});

// The sandbox's side, with the arguments moat gives a task's container (its keep-alive), on
// ports of their own: the helper that hands its listener over, and the socat relay.
const keepAlive = sandboxSpec({
  containerName: 'b',
  taskName: 'b',
  image: 'b',
  workspacePath: dir,
  uid: 1,
  gid: 1,
  limits: { timeoutSeconds: 0 },
  env: {},
  labels: {},
  egressSocketDir: dir,
  handoffHelper: HANDOFF_BINARY,
}).command;
const sandboxSide = (args, port) =>
  args.map((a) =>
    a
      .replace('/moat/egress', dir)
      .replace('/moat/bin/moat-handoff', HANDOFF_BINARY)
      .replace(/\b3128\b/, String(port)),
  );
// Below the kernel's ephemeral range (32768 and up), where the benchmark's own connections take ports.
const handoffPort = 20000 + Math.floor(Math.random() * 9000);
const relayPort = handoffPort + 1000;
const helper = spawn(HANDOFF_BINARY, sandboxSide(keepAlive.slice(1, keepAlive.indexOf('--')), handoffPort), { stdio: 'ignore' });
const socat = spawn('socat', sandboxSide(keepAlive.slice(keepAlive.indexOf('--') + 2), relayPort), { stdio: 'ignore' });

// squid as a plain CONNECT proxy on loopback.
writeFileSync(
  join(dir, 'squid.conf'),
  [
    `http_port 127.0.0.1:${squidPort}`,
    'acl all_ports port 1-65535',
    'http_access allow all',
    'acl CONNECT method CONNECT',
    'cache deny all',
    `pid_filename ${join(dir, 'squid.pid')}`,
    `cache_log ${join(dir, 'cache.log')}`,
    'access_log none',
    'max_filedescriptors 8192',
    'shutdown_lifetime 0 seconds',
    `hosts_file ${join(dir, 'hosts')}`,
    'dns_nameservers 127.0.0.1',
    `coredump_dir ${dir}`,
  ].join('\n'),
);
writeFileSync(join(dir, 'hosts'), '127.0.0.1 bench.test\n');
const squid = spawn('squid', ['-N', '-f', join(dir, 'squid.conf')], { stdio: 'ignore' });
// Whichever way the benchmark ends (a path that fails throws), nothing it started stays behind.
process.on('exit', () => {
  for (const child of [squid, helper, socat, gatewayProcess]) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});
for (const port of [squidPort, handoffPort, relayPort]) {
  for (let i = 0; i < 100; i += 1) {
    const up = await new Promise((r) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (up) break;
    if (i === 99) throw new Error(`nothing listens on port ${port}: squid, moat's helper or socat did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const secure = (socket) =>
  new Promise((resolve, reject) => {
    const t = tlsConnect({ socket, servername: 'bench.test', rejectUnauthorized: false }, () => resolve(t));
    t.on('error', reject);
  });
const direct = (port) =>
  new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
const proxied = (port) => ({
  tls: async () => secure(await tunnel(() => connect(port, '127.0.0.1'), target)),
  plain: () => tunnel(() => connect(port, '127.0.0.1'), `bench.test:${sinkPort}`),
});
const paths = {
  direct: { tls: async () => secure(await direct(upPort)), plain: () => direct(sinkPort) },
  'moat gateway': proxied(handoffPort),
  'moat, socat relay': proxied(relayPort),
  squid: proxied(squidPort),
  // The host's upstream proxy behind moat (issue 17): compare with squid alone.
  'moat gateway → squid': proxied(viaSquidPort),
};
const routes = Object.fromEntries(Object.entries(paths).map(([name, path]) => [name, path.tls]));

function tunnel(open, target) {
  return new Promise((resolve, reject) => {
    const s = open();
    s.on('error', reject);
    s.once('connect', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    let head = '';
    const onData = (chunk) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      if (!/^HTTP\/1\.[01] 200/.test(head)) return reject(new Error(head.split('\r\n')[0]));
      resolve(s);
    };
    s.on('data', onData);
  });
}

async function throughput(open) {
  const s = await open();
  const chunk = Buffer.alloc(1024 * 1024, 7);
  const start = process.hrtime.bigint();
  let sent = 0;
  await new Promise((resolve) => {
    const pump = () => {
      while (sent < transferBytes) {
        sent += chunk.length;
        if (!s.write(chunk)) return s.once('drain', pump);
      }
      s.end(resolve);
    };
    pump();
  });
  s.destroy();
  return transferBytes / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function download(open) {
  const s = await open();
  const start = process.hrtime.bigint();
  let received = 0;
  await new Promise((resolve) => {
    s.on('data', (chunk) => (received += chunk.length));
    s.once('end', resolve);
    s.write('get');
  });
  s.destroy();
  return received / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function latency(open) {
  const samples = [];
  for (let i = 0; i < latencyRounds; i += 1) {
    const start = process.hrtime.bigint();
    const s = await open();
    await new Promise((resolve) => {
      s.once('data', resolve);
      s.write('ping');
    });
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    s.destroy();
  }
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(samples.length * 0.5)], p99: samples[Math.floor(samples.length * 0.99)] };
}

async function held(open) {
  const results = await Promise.allSettled(
    Array.from({ length: concurrent }, async () => {
      const s = await open();
      await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no pong')), 20000);
        s.once('data', () => {
          clearTimeout(t);
          resolve();
        });
        s.write('ping');
      });
      return s;
    }),
  );
  const errors = results.filter((r) => r.status === 'rejected').length;
  for (const r of results) if (r.status === 'fulfilled') r.value.destroy();
  return errors;
}

const rows = {};
for (const name of Object.keys(routes)) rows[name] = { throughput: [], plain: [], download: [], p50: [], p99: [], errors: 0 };
// Alternate the three paths, round after round: loopback throughput on two cores swings by tens of
// percent between runs, so one round each would say more about the moment than about the proxy.
for (let round = 0; round < rounds; round += 1) {
  for (const [name, open] of Object.entries(routes)) {
    rows[name].throughput.push(await throughput(open));
    rows[name].plain.push(await throughput(paths[name].plain));
    rows[name].download.push(await download(open));
    const l = await latency(open);
    rows[name].p50.push(l.p50);
    rows[name].p99.push(l.p99);
  }
}
for (const [name, open] of Object.entries(routes)) rows[name].errors = await held(open);

const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const baseline = rows.direct;
console.log(
  `loopback, ${rounds} alternating rounds of: ${(transferBytes / GIB).toFixed(2)} GiB transfers (TLS upload, TLS download, plain TCP upload), ${latencyRounds} connect+ping; then ${concurrent} concurrent connections; medians`,
);
console.log(
  '| path | upload MiB/s | x direct | download MiB/s | x direct | plain TCP upload MiB/s | x direct | p50 ms | added p50 ms | p99 ms | errors at ' +
    concurrent +
    ' |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const [name, r] of Object.entries(rows)) {
  const up = med(r.throughput);
  const down = med(r.download);
  const plain = med(r.plain);
  console.log(
    `| ${name} | ${(up / 1024 ** 2).toFixed(0)} | ${(up / med(baseline.throughput)).toFixed(2)} | ${(down / 1024 ** 2).toFixed(0)} | ${(down / med(baseline.download)).toFixed(2)} | ${(plain / 1024 ** 2).toFixed(0)} | ${(plain / med(baseline.plain)).toFixed(2)} | ${med(r.p50).toFixed(3)} | ${(med(r.p50) - med(baseline.p50)).toFixed(3)} | ${med(r.p99).toFixed(3)} | ${r.errors} |`,
  );
}
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(
  join(import.meta.dirname, 'results', 'gateway.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      transferBytes,
      latencyRounds,
      concurrent,
      rows: Object.fromEntries(
        Object.entries(rows).map(([name, r]) => [
          name,
          {
            throughputMiBs: med(r.throughput) / 1024 ** 2,
            downloadMiBs: med(r.download) / 1024 ** 2,
            plainUploadMiBs: med(r.plain) / 1024 ** 2,
            p50: med(r.p50),
            p99: med(r.p99),
            addedP50: med(r.p50) - med(baseline.p50),
            errors: r.errors,
          },
        ]),
      ),
    },
    null,
    2,
  ),
);
// Egress through the engine (issue 13): the exec bridge remote engines use, against the local
// path, both from inside a container of the local engine (bench/engine-egress.js); BENCH_ENGINE=off skips it.
if (process.env.BENCH_ENGINE !== 'off') {
  const engineBytes = Number(process.env.BENCH_ENGINE_BYTES ?? 256 * 1024 ** 2);
  const engineLatencyRounds = Number(process.env.BENCH_ENGINE_LATENCY_ROUNDS ?? 50);
  const engineRows = await engineEgress({
    bin: join(import.meta.dirname, '..', 'bin', 'moat.js'),
    scratch: dir,
    egressDir: dir,
    sink: `bench.test:${sinkPort}`,
    upstream: target,
    bytes: engineBytes,
    rounds,
    latencyRounds: engineLatencyRounds,
  });
  const [localName, localRow] = Object.entries(engineRows)[0];
  console.log(
    `\negress from inside a sandbox (no network), local path against the engine path, ${rounds} alternating rounds of: ${(engineBytes / 1024 ** 2).toFixed(0)} MiB plain TCP upload and TLS download, ${engineLatencyRounds} connect+TLS+ping; medians; x = against "${localName}"`,
  );
  console.log('| path | plain TCP upload MiB/s | x | TLS download MiB/s | x | p50 ms | added p50 ms | p99 ms |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const [name, r] of Object.entries(engineRows)) {
    const ratio = (key) => (med(r[key]) / med(localRow[key])).toFixed(2);
    console.log(
      `| ${name} | ${(med(r.upload) / 1024 ** 2).toFixed(0)} | ${ratio('upload')} | ${(med(r.download) / 1024 ** 2).toFixed(0)} | ${ratio('download')} | ${med(r.p50).toFixed(2)} | ${(med(r.p50) - med(localRow.p50)).toFixed(2)} | ${med(r.p99).toFixed(2)} |`,
    );
  }
  writeFileSync(
    join(import.meta.dirname, 'results', 'gateway-engine.json'),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        bytes: engineBytes,
        latencyRounds: engineLatencyRounds,
        rows: Object.fromEntries(
          Object.entries(engineRows).map(([name, r]) => [
            name,
            { uploadMiBs: med(r.upload) / 1024 ** 2, downloadMiBs: med(r.download) / 1024 ** 2, p50: med(r.p50), p99: med(r.p99) },
          ]),
        ),
      },
      null,
      2,
    ),
  );
}

// Method and path rules (issue 17): HTTPS requests to one host through a plain tunnel, and with
// rules on that host (its TLS inspected with a task CA, each request judged, then sent on the
// task's kept-alive upstream connection). A fresh connection per request (CONNECT, TLS, GET), requests on one kept-alive
// connection, and a POST upload of a large body; the same rounds alternate the two.
const requestRounds = Number(process.env.BENCH_REQUESTS ?? 300);
const uploadBytes = Number(process.env.BENCH_UPLOAD_BYTES ?? 256 * 1024 ** 2);
// Client sockets without Nagle's delay, as curl and browsers open them.
const openWeb = async (port) => secure(await tunnel(() => connect({ port, host: '127.0.0.1', noDelay: true }), webTarget));
/** One request on an open TLS connection; resolves when its whole answer (Content-Length) is read. */
function request(s, method = 'GET', bodyBytes = 0) {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length: *(\d+)/i.exec(head.subarray(0, end).toString('latin1'))?.[1] ?? 0);
      if (head.length - end - 4 < length) return;
      s.off('data', onData);
      const status = head.subarray(9, 12).toString();
      return status === '200' ? resolve() : reject(new Error(`status ${status}`));
    };
    s.on('data', onData);
    s.write(`${method} /bench/x HTTP/1.1\r\nHost: ${webTarget}\r\nContent-Length: ${bodyBytes}\r\n\r\n`);
    if (bodyBytes > 0) {
      const block = Buffer.alloc(1024 * 1024, 7);
      let sent = 0;
      const pump = () => {
        while (sent < bodyBytes) {
          const part = block.subarray(0, Math.min(block.length, bodyBytes - sent));
          sent += part.length;
          if (!s.write(part)) return s.once('drain', pump);
        }
      };
      pump();
    }
  });
}
const requestPaths = { 'plain tunnel': tunnelPort, 'method/path rules (inspected)': rulesPort };
const requestRows = Object.fromEntries(Object.keys(requestPaths).map((name) => [name, { fresh: [], keptAlive: [], upload: [] }]));
for (let round = 0; round < 3; round += 1) {
  for (const [name, port] of Object.entries(requestPaths)) {
    const samples = [];
    for (let i = 0; i < requestRounds; i += 1) {
      const start = process.hrtime.bigint();
      const s = await openWeb(port);
      await request(s);
      samples.push(Number(process.hrtime.bigint() - start) / 1e6);
      s.destroy();
    }
    samples.sort((a, b) => a - b);
    requestRows[name].fresh.push(samples[Math.floor(samples.length / 2)]);
    const s = await openWeb(port);
    const start = process.hrtime.bigint();
    for (let i = 0; i < requestRounds; i += 1) await request(s);
    requestRows[name].keptAlive.push(requestRounds / (Number(process.hrtime.bigint() - start) / 1e9));
    const upStart = process.hrtime.bigint();
    await request(s, 'POST', uploadBytes);
    requestRows[name].upload.push(uploadBytes / (Number(process.hrtime.bigint() - upStart) / 1e9));
    s.destroy();
  }
}
const tunnelRow = requestRows['plain tunnel'];
console.log(
  `\nHTTPS requests, 3 alternating rounds of: ${requestRounds} requests each on a fresh connection (CONNECT+TLS+GET) and on one kept-alive connection, one ${(uploadBytes / 1024 ** 2).toFixed(0)} MiB POST; medians`,
);
console.log('| path | fresh request p50 ms | x tunnel | kept-alive requests/s | x tunnel | upload MiB/s | x tunnel |');
console.log('|---|---|---|---|---|---|---|');
for (const [name, r] of Object.entries(requestRows)) {
  const fresh = med(r.fresh);
  const kept = med(r.keptAlive);
  const up = med(r.upload);
  console.log(
    `| ${name} | ${fresh.toFixed(3)} | ${(fresh / med(tunnelRow.fresh)).toFixed(2)} | ${kept.toFixed(0)} | ${(kept / med(tunnelRow.keptAlive)).toFixed(2)} | ${(up / 1024 ** 2).toFixed(0)} | ${(up / med(tunnelRow.upload)).toFixed(2)} |`,
  );
}
writeFileSync(
  join(import.meta.dirname, 'results', 'gateway-requests.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      requestRounds,
      uploadBytes,
      rows: Object.fromEntries(
        Object.entries(requestRows).map(([name, r]) => [
          name,
          { freshP50: med(r.fresh), keptAlivePerSecond: med(r.keptAlive), uploadMiBs: med(r.upload) / 1024 ** 2 },
        ]),
      ),
    },
    null,
    2,
  ),
);
web.close();
upstream.close();
sink.close();
process.exit(0);
