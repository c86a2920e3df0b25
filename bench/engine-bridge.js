// The exec bridge (src/service/egress-bridge.ts) as bench/engine-egress.js runs it: a process of its
// own, as moat's detached bridge is, carrying one container's proxy connections to the benchmark's gateway.
//   node bench/engine-bridge.js <gateway socket> <container> <user>
import { DockerEngine } from '../dist/engine/docker-engine.js';
import { findEngine } from '../dist/engine/find-engine.js';
import { runBridge } from '../dist/service/egress-bridge.js';

const [gatewaySocket, container, user] = process.argv.slice(2);
const engine = new DockerEngine(await findEngine(process.env));
process.on('disconnect', () => process.exit(0));
await runBridge(engine, { gatewaySocket, container, user });
process.exit(0);
