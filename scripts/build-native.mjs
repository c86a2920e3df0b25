// Builds moat's small native parts into dist/native/ (native/*.c): the gateway's addon that
// takes a listening socket handed over a unix socket, the static helper that hands it over
// from inside a sandbox, and moat-client, the `moat` command's front that runs exec on the warm
// server without starting Node (bin/moat). All are optional: without a C compiler or Node's
// headers, moat says so here, sandboxes reach the gateway through the relay they used before
// (socat), and every command starts Node.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

const out = 'dist/native';
const say = (line) => process.stderr.write(`build-native: ${line}\n`);

const compiler = ['cc', 'gcc', 'clang'].find((name) => spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0);
const nodedir = process.env.npm_config_nodedir;
const headers = [
  nodedir && join(nodedir, 'include', 'node'),
  join(dirname(process.execPath), '..', 'include', 'node'),
  '/usr/include/node',
  '/usr/local/include/node',
]
  .filter(Boolean)
  .find((dir) => existsSync(join(dir, 'node_api.h')));

mkdirSync(out, { recursive: true });
if (!compiler) {
  for (const file of ['fdpass.node', 'moat-handoff', 'moat-client']) rmSync(join(out, file), { force: true });
  say('skipped: no C compiler (cc); sandboxes use the socat relay and every moat command starts Node (apt-get install gcc libc6-dev)');
  process.exit(0);
}

// Written beside the target, then renamed: a running gateway keeps the file it loaded.
function compile(target, args) {
  const part = `${target}.part`;
  const result = spawnSync(compiler, [...args, '-o', part], { encoding: 'utf8' });
  if (result.status !== 0) {
    rmSync(part, { force: true });
    rmSync(target, { force: true });
    say(`${target} not built: ${(result.stderr || result.error?.message || '').trim().split('\n').slice(-1)[0]}`);
    return false;
  }
  renameSync(part, target);
  return true;
}
const flags = ['-O2', '-Wall', '-Wextra'];
if (!compile(join(out, 'moat-client'), [...flags, 'native/client.c'])) say('every moat command starts Node until moat-client builds');
if (!headers) {
  for (const file of ['fdpass.node', 'moat-handoff']) rmSync(join(out, file), { force: true });
  say("gateway hand-over skipped: Node's headers (node_api.h) not found; sandboxes use the socat relay");
  process.exit(0);
}
const addon = compile(join(out, 'fdpass.node'), [...flags, '-shared', '-fPIC', `-I${headers}`, 'native/fdpass.c']);
const helper = compile(join(out, 'moat-handoff'), [...flags, '-static', 'native/handoff.c']);
if (!addon || !helper) say('sandboxes use the socat relay until both build');
