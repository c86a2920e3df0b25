import type { Readable, Writable } from 'node:stream';
import type { KubeConfig } from '@kubernetes/client-node';
import WebSocket from 'ws';
import { MoatError } from '../errors.js';
import { frame, UNFRAME_LOOP } from './exec-ahead-script.js';
import { StatusLine } from './exec-ahead-status.js';

/**
 * A command in a pod through the API server's exec stream (the channel protocol,
 * v4.channel.k8s.io: one byte of channel, then the data; 0 stdin, 1 stdout, 2 stderr, 3 the
 * status, 4 terminal size). That protocol cannot close stdin and keep reading the output (v5 can,
 * from Kubernetes 1.29 only), so stdin travels framed: "length\n" then that many bytes, and "0\n"
 * at its end; a constant script in the sandbox unframes it and closes the command's stdin there.
 */

/**
 * Opens an exec stream (`path`: the pod's exec URL with its query) with the kubeconfig's
 * credentials. Rejects with the HTTP status when the API server refuses the upgrade.
 */
export async function openExecSocket(kc: KubeConfig, path: string): Promise<WebSocket> {
  const server = kc.getCurrentCluster()?.server ?? '';
  const url = `${server.replace(/^http/, 'ws').replace(/\/$/, '')}${path}`;
  const options: WebSocket.ClientOptions = {};
  await kc.applyToHTTPSOptions(options as Parameters<KubeConfig['applyToHTTPSOptions']>[0]);
  return new Promise<WebSocket>((resolve, reject) => {
    const socket = new WebSocket(url, ['v4.channel.k8s.io'], options);
    socket.once('open', () => resolve(socket));
    socket.once('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body = (body + chunk.toString('utf8')).slice(0, 2000)));
      response.on('end', () => reject(Object.assign(new Error(`exec refused: ${response.statusCode}: ${body}`), { statusCode: response.statusCode, body })));
      response.on('error', () => reject(Object.assign(new Error(`exec refused: ${response.statusCode}`), { statusCode: response.statusCode })));
    });
    socket.once('error', reject);
  });
}

/**
 * Unframes stdin into the command ($@), whose exit status is the script's. The unframing loop runs
 * in the background (on the exec's stdin, kept as fd 3: a background list's own stdin is
 * /dev/null), so the exec ends when the command does, not when the caller's stdin ends too. The
 * command gets a session (so a process group) of its own through setsid: moat passes Ctrl-C on by
 * signalling the group of the pid the command records (service/exec.ts), and in the shell's group
 * that pid would lead none. `-w` keeps the status should setsid have to fork.
 */
const UNFRAME_SCRIPT = `exec 3<&0; ${UNFRAME_LOOP}`;

/** The command as sent: with stdin and no terminal, behind the unframing script. */
export function framedCommand(cmd: string[], stdin: boolean, tty: boolean): string[] {
  return stdin && !tty ? ['/bin/sh', '-c', UNFRAME_SCRIPT, 'moat-stdin', ...cmd] : cmd;
}

/** One frame of stdin on the wire (channel byte first); an empty chunk is the end. */
export function stdinFrame(data: Buffer | string): Buffer {
  return Buffer.concat([Buffer.from([0]), frame(data)]);
}

/** The exec's end as the API server reports it on channel 3 (a metav1.Status). */
export function exitCodeOf(status: {
  status?: string;
  reason?: string;
  message?: string;
  details?: { causes?: Array<{ reason?: string; message?: string }> };
}): number {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  if (status.reason === 'NonZeroExitCode' && cause?.message && /^[0-9]+$/.test(cause.message)) return Number(cause.message);
  throw new MoatError('E_ENGINE_FAILED', `the command could not run in the pod: ${(status.message ?? 'no reason given').slice(0, 300)}`, {
    hint: 'check the pod with `moat doctor` and kubectl describe pod',
    details: { ran: false },
  });
}

export interface PodExecIO {
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  tty: boolean;
  size?: () => { rows: number; columns: number };
  onResize?: (listener: () => void) => () => void;
}

/**
 * Wires an open exec socket to the caller's streams and resolves with the command's exit status.
 * A socket that closes without a status (the API server or the node went away) is an error: the
 * command's fate is unknown.
 */
export function runOverSocket(socket: WebSocket, io: PodExecIO, what: string, inBand?: { mark: string; early: boolean }): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let status: number | undefined;
    let failure: unknown;
    // A waiting shell's command (kubernetes-exec-ahead.ts): its status comes in-band, as the last
    // line of stdout and of stderr (never passed on); once both came, the stream is done (unless
    // `early` is false: then the stream's own status is awaited, to measure the difference).
    const lines = inBand ? { 1: new StatusLine(inBand.mark), 2: new StatusLine(inBand.mark) } : undefined;
    socket.binaryType = 'nodebuffer';
    const write = (out: Writable, payload: Buffer) => {
      // Backpressure: a slow reader (a bundle going to disk) pauses the socket rather than piling up.
      if (payload.length > 0 && !out.write(payload)) {
        socket.pause();
        out.once('drain', () => socket.resume());
      }
    };
    socket.on('message', (data: Buffer) => {
      if (data.length === 0) return;
      const channel = data[0];
      const payload = data.subarray(1);
      const out = channel === 1 ? io.stdout : channel === 2 ? io.stderr : undefined;
      if (out && lines && (channel === 1 || channel === 2)) {
        write(out, lines[channel].push(payload));
        const [a, b] = [lines[1].code, lines[2].code];
        // The same number on both lines; a line that was not one (forged) leaves it to the stream.
        if (inBand?.early && status === undefined && typeof a === 'number' && a === b) {
          status = a;
          socket.terminate();
        }
      } else if (out) write(out, payload);
      if (channel === 3 && payload.length > 0) {
        try {
          status = exitCodeOf(JSON.parse(payload.toString('utf8')) as Parameters<typeof exitCodeOf>[0]);
        } catch (error) {
          failure = error;
        }
      }
    });
    let stopResize: (() => void) | undefined;
    const send = (frame: Buffer) => {
      if (socket.readyState === 1) socket.send(frame);
    };
    if (io.tty && io.size) {
      const resize = () => {
        const { rows, columns } = io.size!();
        if (rows > 0) send(Buffer.concat([Buffer.from([4]), Buffer.from(JSON.stringify({ Width: columns, Height: rows }))]));
      };
      resize();
      stopResize = io.onResize?.(resize);
    }
    const stdin = io.stdin;
    const onData = (chunk: Buffer | string) => send(io.tty ? Buffer.concat([Buffer.from([0]), Buffer.from(chunk)]) : stdinFrame(chunk));
    const onEnd = () => {
      if (!io.tty) send(stdinFrame(Buffer.alloc(0)));
    };
    if (stdin) {
      stdin.on('data', onData);
      stdin.on('end', onEnd);
    }
    socket.on('error', (error: Error) => (failure ??= error));
    socket.on('close', () => {
      // The stream ended without the status lines: what was held back was output after all.
      if (lines && status === undefined) {
        write(io.stdout, lines[1].flush());
        write(io.stderr, lines[2].flush());
      }
      stopResize?.();
      stdin?.off('data', onData);
      stdin?.off('end', onEnd);
      if (status !== undefined) resolve(status);
      else
        reject(
          failure instanceof MoatError
            ? failure
            : new MoatError('E_ENGINE_UNREACHABLE', `the connection to the cluster ended before ${what} finished`, {
                hint: 'check the cluster (kubectl get nodes); commits synced before are safe on the task branch',
                cause: failure,
              }),
        );
    });
  });
}

/** Statuses a command gets when its container is killed under it (SIGKILL, SIGTERM): its pod's end, not its own. */
const KILLED = new Set([137, 143]);

/**
 * The command's status, unless its pod ends first: then `ended`'s error, and the socket is closed
 * (the kubelet may never close it). A status that comes within `graceMs` of the pod's end is the
 * command's own, kept unless it says the command was killed, by that very end.
 */
export async function untilPodEnds(socket: WebSocket, finished: Promise<number>, ended: Promise<Error>, graceMs = 1000): Promise<number> {
  type Outcome = { code: number } | { error: unknown };
  const outcome = finished.then<Outcome, Outcome>(
    (code) => ({ code }),
    (error: unknown) => ({ error }),
  );
  const first = await Promise.race([outcome, ended.then((end) => ({ end }))]);
  if ('end' in first) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      outcome,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (late && 'code' in late && !KILLED.has(late.code)) return late.code;
    socket.terminate();
    await outcome;
    throw first.end;
  }
  if ('error' in first) throw first.error;
  return first.code;
}
