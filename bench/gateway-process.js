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

const [socketPath, handoffPath, plainPort, squidPort] = process.argv.slice(2);
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
const viaSquid = createServer({ allowHalfOpen: true }, (client) => void gateway.handle(client, { task: 'bench', policy: () => policy, audit: () => undefined, upstream }).catch(() => client.destroy()));
await new Promise((resolve) => viaSquid.listen(0, '127.0.0.1', resolve));
process.send?.({ viaSquidPort: viaSquid.address().port });
// The benchmark gone, however it went (its IPC channel closes with it): this goes too.
process.on('disconnect', () => process.exit(0));
