// The gateway as the benchmark runs it: a process of its own, like moat's gateway daemon, with a
// policy that allows the benchmark's upstream name (mapped to loopback) and nothing else. Like the
// daemon, it serves a task's unix socket (for the socat relay) and takes listeners handed over
// on the handover socket beside it.
import { createServer } from 'node:net';
import { EgressGateway } from '../dist/gateway/egress-gateway.js';
import { ListenerHandoff } from '../dist/gateway/listener-handoff.js';
import { fdPass } from '../dist/gateway/native.js';
import { buildPolicy } from '../dist/domain/egress-policy.js';
import { parseIp } from '../dist/domain/ip-address.js';
import { buildRequestRules } from '../dist/domain/request-rules.js';
import { createTaskCa, leafFor } from '../dist/gateway/task-ca.js';
import { readFileSync } from 'node:fs';

const [socketPath, handoffPath, plainPort, squidPort, requestsCa, taskCaDir] = process.argv.slice(2);
// The plain TCP upstream by name and port: a tunnel there may carry any protocol.
const policy = buildPolicy('allowlist', ['bench.test', `bench.test:${plainPort}`, '127.0.0.1/32'], []);
const gateway = new EgressGateway(async () => [parseIp('127.0.0.1')]);
const serve = (client) => void gateway.handle(client, { task: 'bench', policy: () => policy, audit: () => undefined }).catch(() => client.destroy());
const server = createServer({ allowHalfOpen: true }, serve);
await new Promise((resolve) => server.listen({ path: socketPath, backlog: 4096 }, resolve));
const native = fdPass();
if (!native) throw new Error('the native parts are not built (npm run build, with a C compiler)');
await new ListenerHandoff(native, serve).listen(handoffPath);
// The same gateway with the host's upstream proxy (squid): allowed tunnels go through it. Served
// on a loopback port (no handover needed to compare the two proxies chained against squid alone).
const upstream = { https: `http://127.0.0.1:${squidPort}`, http: `http://127.0.0.1:${squidPort}` };
const viaSquid = createServer(
  { allowHalfOpen: true },
  (client) => void gateway.handle(client, { task: 'bench', policy: () => policy, audit: () => undefined, upstream }).catch(() => client.destroy()),
);
await new Promise((resolve) => viaSquid.listen(0, '127.0.0.1', resolve));
// HTTP requests to one HTTPS upstream (bench/gateway.js, "requests"): a plain tunnel, and the
// same host under method and path rules, so its TLS is inspected with a task CA and every request judged.
const requestsGateway = new EgressGateway(async () => [parseIp('127.0.0.1')], 10_000, [readFileSync(requestsCa, 'utf8')]);
const ruled = { ...buildPolicy('allowlist', ['bench.test', '127.0.0.1/32'], []) };
const rules = buildRequestRules([{ host: 'bench.test', methods: ['GET', 'POST'], paths: ['/bench/'], maxBody: 1024 ** 3, from: 'user' }]);
ruled.requests = rules;
const taskCa = createTaskCa(taskCaDir, 'bench');
const listen = async (channel) => {
  const server = createServer(
    { allowHalfOpen: true },
    (client) => void requestsGateway.handle(client, { task: 'bench', audit: () => undefined, ...channel }).catch(() => client.destroy()),
  );
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server.address().port;
};
const tunnelPort = await listen({ policy: () => policy });
const rulesPort = await listen({ policy: () => ruled, leaf: (host) => leafFor(taskCa, host) });
process.send?.({ viaSquidPort: viaSquid.address().port, tunnelPort, rulesPort });
// The benchmark gone, however it went (its IPC channel closes with it): this goes too.
process.on('disconnect', () => process.exit(0));
