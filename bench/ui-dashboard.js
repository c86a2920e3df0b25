// The dashboard's own process for bench/ui.js (`moat ui` runs apart from the gateway and from the
// agents): `node bench/ui-dashboard.js <home> <token>` sends its address, then answers `cpu` with
// its CPU time so far, `heap` with its heap after a collection, and `close` by leaving.
import { join } from 'node:path';
import { MoatContext } from '../dist/service/context.js';
import { startDashboard } from '../dist/ui/server.js';

const [home, token] = process.argv.slice(2);
const ctx = new MoatContext({ env: { ...process.env, MOAT_HOME: home, MOAT_CONFIG: join(home, 'config.yaml') }, cwd: home });
const dashboard = await startDashboard(ctx, { token, env: ctx.env });
process.on('message', (message) => {
  if (message === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send({ cpuMs: (user + system) / 1000 });
  } else if (message === 'heap') {
    // Collected first (the bench starts this process with --expose-gc): what is held, not what is garbage yet.
    global.gc?.();
    process.send({ heapMiB: process.memoryUsage().heapUsed / 1024 ** 2 });
  } else if (message === 'close') void dashboard.close().then(() => process.exit(0));
});
process.send({ url: dashboard.url });
