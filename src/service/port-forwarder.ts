import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { openEngine } from '../engine/open-engine.js';

/**
 * One open port of one task (`moat port`), as a process of its own: it listens on the host and,
 * for each connection, runs a relay inside the task's container (socat to the sandbox's own
 * 127.0.0.1:<port>) over the engine's exec stream. The sandbox gets no network and no route to
 * anything: connections come in, none go out, and the relay can reach only the sandbox's loopback.
 *
 * Why a process per port, detached, with its state file in the task's folder: a forward must
 * outlive the `moat port` command that opened it, yet the gateway (outbound only, there for tasks
 * with a network) and the warm CLI server (leaves when idle) are the wrong owners. Closing is one
 * signal to a pid moat recorded (checked against its command line first); the process also leaves
 * by itself when the container stops or the task's state file goes (down, rm, gc).
 */
export interface ForwarderSpec {
  containerId: string;
  port: number;
  hostPort: number;
  bind: string;
  /** uid:gid the relay runs as in the sandbox (the sandbox's user, never root). */
  user: string;
  /** This forward's state file: removed on close; its disappearance closes the forward. */
  stateFile: string;
}

/** What an open port's state file holds (written by the forwarder once it listens). */
export interface OpenPortState {
  port: number;
  hostPort: number;
  bind: string;
  pid: number;
  containerId: string;
  openedAt: string;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as ForwarderSpec;
const engine = await openEngine(process.env);
const connections = new Set<Socket>();

function relay(client: Socket): void {
  connections.add(client);
  client.on('error', () => client.destroy());
  const stdin = new PassThrough();
  client.pipe(stdin);
  client.on('close', () => {
    connections.delete(client);
    stdin.end();
  });
  const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
  // Only the sandbox's own loopback: the relay runs in this container's network namespace.
  void engine
    .exec(spec.containerId, { cmd: ['socat', 'STDIO', `TCP:127.0.0.1:${spec.port}`], user: spec.user }, { stdin, stdout: client, stderr: discard })
    .catch(() => undefined)
    .finally(() => client.end());
}

function leave(code: number): never {
  // The listening socket is closed first (synchronously, by libuv), so the host port is free
  // before this process exits, not at some point of the kernel's exit: closePort waits for the
  // exit (ports.ts), and without this a socket left to the exit could still hold the port for a
  // moment after closePort returned (seen on CI: the next listen on that port failed, then the
  // port was free again).
  server.close();
  rmSync(spec.stateFile, { force: true });
  for (const client of connections) client.destroy();
  process.exit(code);
}

const server = createServer({ allowHalfOpen: true }, relay);
server.on('error', (error: NodeJS.ErrnoException) => {
  // Exit once the reason is out: moat tells "in use" (then tries any free port) from other failures.
  if (process.send) process.send({ error: error.code ?? error.message }, () => process.exit(1));
  else process.exit(1);
});
server.listen({ host: spec.bind, port: spec.hostPort, exclusive: true }, () => {
  const address = server.address();
  const hostPort = typeof address === 'object' && address ? address.port : spec.hostPort;
  const state: OpenPortState = {
    port: spec.port,
    hostPort,
    bind: spec.bind,
    pid: process.pid,
    containerId: spec.containerId,
    openedAt: new Date().toISOString(),
  };
  writeFileSync(`${spec.stateFile}.tmp`, `${JSON.stringify(state)}\n`, { mode: 0o600 });
  renameSync(`${spec.stateFile}.tmp`, spec.stateFile);
  // The channel closes once the answer is out: moat's command is not held by it.
  process.send?.({ ready: hostPort }, () => process.disconnect?.());
});
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => leave(0));
// The task went (rm, gc) or its container stopped (down, a crash): the port is freed.
setInterval(() => {
  if (!existsSync(spec.stateFile)) leave(0);
}, 1000);
setInterval(() => {
  void engine
    .inspectContainer(spec.containerId)
    .then((info) => {
      if (!info?.running) leave(0);
    })
    .catch(() => undefined);
}, 3000);
