import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, finish, MOAT_COMMAND, Scratch, serverPids } from '../helpers/fixtures.js';

/**
 * The warm CLI server starts git (and every program runProcess starts) from its helper process
 * (src/workspace/spawner.ts), forked once as it starts: a fork of the server itself blocks its
 * loop, and with it the command it serves. Which process started what is read from a hook the
 * server loads (NODE_OPTIONS=--require): it logs each spawn() made in the server's own process.
 */
describe('the warm server forks no git of its own', () => {
  const scratch = new Scratch();
  const run = join(scratch.root, 'run');
  const log = join(scratch.root, 'spawns.log');
  const hook = join(scratch.root, 'spawn-hook.cjs');
  writeFileSync(
    hook,
    `if (process.argv.includes('__serve') || process.argv.some((arg) => arg.endsWith('spawner-main.js'))) {
  const cp = require('node:child_process');
  const fs = require('node:fs');
  const spawn = cp.spawn;
  cp.spawn = function (file, args, ...rest) {
    fs.appendFileSync(${JSON.stringify(log)}, [process.pid, file, ...(Array.isArray(args) ? args : [])].join(' ') + '\\n');
    return spawn.call(this, file, args, ...rest);
  };
  // The helper is an ES module: its import of spawn sees the hook only once the builtins' ES views are synced.
  require('node:module').syncBuiltinESMExports();
}
`,
  );
  const env = scratch.env({ MOAT_POOL: 'off', NODE_OPTIONS: `--require ${hook}` });
  afterAll(() => scratch.cleanup());

  it("serves a command whose git runs in the server's helper, not in the server", { timeout: 120_000 }, async () => {
    // The first command starts the server (and runs beside it); the second is served.
    const first = await finish(MOAT_COMMAND, ['ls', '--json'], { cwd: scratch.repo, env });
    expect(first.status, first.stderr).toBe(0);
    const pids = await eventually(
      async () => serverPids(run).filter((pid) => existsSync(`/proc/${pid}`)),
      (p) => p.length === 1,
      10_000,
    );
    expect(pids).toHaveLength(1);
    const server = pids[0]!;
    const served = await finish(MOAT_COMMAND, ['ls', '--json'], { cwd: scratch.repo, env });
    expect(served.status, served.stderr).toBe(0);
    expect(JSON.parse(served.stdout)).toEqual([]);

    // The server opened the repository (git rev-parse) for that command: through its helper, a
    // child of the server running spawner-main.js, and not by a spawn() of its own.
    const children = readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(server);
        } catch {
          return false;
        }
      })
      .map((pid) => ({ pid, cmd: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ') }));
    const helpers = children.filter((child) => child.cmd.includes('spawner-main.js'));
    expect(helpers).toHaveLength(1);
    const lines = existsSync(log) ? readFileSync(log, 'utf8').split('\n') : [];
    const by = (pid: number | string) => lines.filter((line) => line.startsWith(`${pid} git `));
    expect(by(helpers[0]!.pid).some((line) => line.includes('rev-parse'))).toBe(true);
    expect(by(server)).toEqual([]);
  });
});
