import { closeSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { constants } from 'node:os';
import type { FdPass } from './native.js';
import { adoptSandboxConnection } from './relay.js';

const EAGAIN = constants.errno.EAGAIN;
/** How long a connection on the handover socket has to send its descriptor. */
const RECEIVE_TRIES = 200;
const RECEIVE_PAUSE_MS = 5;
/** Handovers waiting for their message at once: more are closed unread (a sandbox flooding the socket). */
const MAX_PENDING = 4;

/**
 * The gateway's end of the handover: a unix socket on which the sandbox's helper sends the
 * listening socket it made on its own loopback. The gateway then accepts the sandbox's
 * connections on it as it would on its own socket, and serves them with `onConnection`.
 *
 * The sandbox may send anything: the addon refuses all but one loopback TCP listener. A new
 * handover replaces the last, so a sandbox holds at most one listener here, and the listener
 * goes when the connection that brought it closes (the sandbox or its helper is gone), so a dead
 * sandbox's network namespace is not kept alive by the gateway.
 */
export class ListenerHandoff {
  private readonly server: Server;
  private current?: { link: Socket; listener: Server };
  private pending = 0;

  constructor(
    private readonly native: FdPass,
    private readonly onConnection: (client: Socket) => void,
  ) {
    // Paused: Node must not read the handover message, or the descriptor in it would be lost.
    this.server = createServer({ pauseOnConnect: true }, (link) => void this.take(link));
  }

  listen(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ path, backlog: 16 }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  close(): void {
    this.server.close();
    this.drop();
  }

  private async take(link: Socket): Promise<void> {
    link.on('error', () => undefined);
    if (this.pending >= MAX_PENDING) return void link.destroy();
    this.pending += 1;
    try {
      await this.receive(link);
    } finally {
      this.pending -= 1;
    }
  }

  private async receive(link: Socket): Promise<void> {
    const fd = (link as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let received = -EAGAIN;
    for (let tries = 0; fd !== undefined && fd >= 0 && received === -EAGAIN && tries < RECEIVE_TRIES && !link.destroyed; tries += 1) {
      received = this.native.receiveListener(fd);
      if (received === -EAGAIN) await new Promise((resolve) => setTimeout(resolve, RECEIVE_PAUSE_MS));
    }
    if (received < 0 || link.destroyed) {
      if (received >= 0) closeSync(received);
      link.destroy();
      return;
    }
    // No Nagle delay on the sandbox's side either: the handshakes and pings relayed are small writes.
    // Accepted paused: the connection's reading moves to a socket that reads into its own buffer.
    const listener = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (accepted) => {
      const client = adoptSandboxConnection(accepted);
      if (client) this.onConnection(client);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen({ fd: received, backlog: 4096 }, () => resolve());
      });
    } catch {
      link.destroy();
      return;
    }
    this.drop();
    this.current = { link, listener };
    link.on('close', () => {
      if (this.current?.link === link) this.drop();
    });
    // Read and ignore: only the link's end matters from now on.
    link.on('data', () => undefined);
    link.resume();
    link.write('k');
  }

  private drop(): void {
    if (!this.current) return;
    const { link, listener } = this.current;
    this.current = undefined;
    // Connections already accepted go on; only new ones stop.
    listener.close();
    link.destroy();
  }
}
