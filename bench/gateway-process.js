// The gateway as the benchmark runs it: a process of its own, like moat's gateway daemon, with a
// policy that allows the benchmark's upstream name (mapped to loopback) and nothing else.
import { createServer } from 'node:net';
import { EgressGateway } from '../dist/gateway/egress-gateway.js';
import { buildPolicy } from '../dist/domain/egress-policy.js';
import { parseIp } from '../dist/domain/ip-address.js';

const [socketPath] = process.argv.slice(2);
const policy = buildPolicy('allowlist', ['bench.test', '127.0.0.1/32'], []);
const gateway = new EgressGateway(async () => [parseIp('127.0.0.1')]);
const server = createServer({ allowHalfOpen: true }, (client) => void gateway.handle(client, { task: 'bench', policy: () => policy, audit: () => undefined }).catch(() => client.destroy()));
server.listen({ path: socketPath, backlog: 4096 }, () => process.send?.('ready'));
