import { Socket } from 'node:net';

/**
 * The relay's plumbing: sockets that read into buffers of their own (reused across connections),
 * and the two directions of a spliced connection, with backpressure.
 */

/** One direction of a relay, with backpressure: reading pauses while the other side's buffer is full. */
export function relay(from: Socket, to: Socket): void {
  const resume = () => from.resume();
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', resume);
    }
  });
  from.once('end', () => to.end());
  from.resume();
}

const RELAY_BUFFER_BYTES = 256 * 1024;
export const inboxes = new WeakMap<Socket, RelayInbox>();

/**
 * Read buffers of closed connections, kept for the next ones: two fresh 256 KiB buffers per
 * connection (memory mapped, then faulted in) showed in the latency's tail. Only the bytes of the
 * current read are ever passed on, never what a buffer held before.
 */
const spareBuffers: Buffer[] = [];
const MAX_SPARE_BUFFERS = 64;

export function relayBuffer(): Buffer {
  return spareBuffers.pop() ?? Buffer.allocUnsafeSlow(RELAY_BUFFER_BYTES);
}

export function recycleWhenClosed(socket: Socket, buffer: Buffer): void {
  // Closed: the handle reads no more into it.
  socket.once('close', () => {
    if (spareBuffers.length < MAX_SPARE_BUFFERS) spareBuffers.push(buffer);
  });
}

/**
 * A sandbox's connection, accepted paused, taken over by a socket that reads into a buffer of its
 * own, like a tunnel's upstream: when the relay itself is the limit (a plain TCP upload), reading
 * the sandbox's side into a fresh 64 KiB buffer per read cost a quarter of the throughput
 * (docs/benchmarks.md). Until the relay starts, what the sandbox sends still arrives as 'data'
 * (the request head, the TLS hello), copied. Node offers `onread` only to sockets it creates, so
 * the accepted socket's handle moves to a new one; undefined if the connection is already gone.
 */
export function adoptSandboxConnection(accepted: Socket): Socket | undefined {
  const holder = accepted as unknown as { _handle: unknown };
  const handle = holder._handle;
  if (!handle || accepted.destroyed) return undefined;
  holder._handle = null;
  const inbox = new RelayInbox(true);
  const buffer = relayBuffer();
  const options = { handle, allowHalfOpen: true, onread: { buffer, callback: (length: number, read: Uint8Array) => inbox.receive(length, read) } };
  const socket = new Socket(options as ConstructorParameters<typeof Socket>[0]);
  recycleWhenClosed(socket, buffer);
  inbox.source = socket;
  inboxes.set(socket, inbox);
  // Nothing is read until the gateway asks (readRequestHead resumes it).
  socket.pause();
  return socket;
}

/**
 * The receiving end of a socket that reads into its own buffer (onread). While the buffer's bytes
 * wait to be written on, reading pauses: the next read would overwrite them.
 */
export class RelayInbox {
  private early: Buffer[] = [];
  private deliver?: (length: number, buffer: Uint8Array) => boolean;
  source?: Socket;

  /** `asData`: before the relay, reads are emitted as 'data' on the source; otherwise kept until it starts (a server that speaks first). */
  constructor(private readonly asData = false) {}

  receive(length: number, buffer: Uint8Array): boolean {
    if (this.deliver) return this.deliver(length, buffer);
    const copy = Buffer.from(buffer.subarray(0, length));
    if (this.asData && this.source) this.source.emit('data', copy);
    else this.early.push(copy);
    return true;
  }

  relayTo(from: Socket, to: Socket): void {
    for (const chunk of this.early) to.write(chunk);
    this.early = [];
    let paused = false;
    const resume = () => {
      if (!paused) return;
      paused = false;
      from.resume();
    };
    this.deliver = (length, buffer) => {
      to.write(buffer.subarray(0, length), resume);
      if (to.writableLength === 0) return true;
      paused = true;
      return false;
    };
    from.once('end', () => to.end());
    // The sandbox's side was paused after the hello; an upstream reads already.
    from.resume();
  }
}
