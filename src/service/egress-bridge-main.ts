import { openEngine } from '../engine/open-engine.js';
import { TaskStore } from '../state/task-store.js';
import { gatewaySocketOf, runBridge } from './egress-bridge.js';

/** Detached bridge of one task (egress-bridge.ts): node egress-bridge-main.js <home> <repoKey> <task> <container>. */
const [home, repoKey, task, container] = process.argv.slice(2);
if (!home || !repoKey || !task || !container) {
  process.stderr.write('usage: egress-bridge-main.js <home> <repoKey> <task> <container>\n');
  process.exit(2);
}
const record = await new TaskStore(home).get(repoKey, task);
if (!record) process.exit(0);
const engine = await openEngine(process.env);
process.on('SIGTERM', () => process.exit(0));
await runBridge(engine, { gatewaySocket: gatewaySocketOf(home, repoKey, task), container, user: `${record.user.uid}:${record.user.gid}` });
process.exit(0);
