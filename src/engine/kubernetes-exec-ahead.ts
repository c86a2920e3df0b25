import type { Socket } from 'node:net';
import { Watch, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type WebSocket from 'ws';
import { openExecSocket, stdinFrame } from './kubernetes-exec.js';
import { commandWords } from './exec-ahead-script.js';
import { statusMark } from './exec-ahead-status.js';

/**
 * Exec streams opened ahead: an exec's WebSocket setup (TLS to the API server, its upgrade, the
 * kubelet's and the runtime's exec) costs hundreds of milliseconds, more than most commands. So
 * once a pod answers, and after each command that used one, an exec of {@link WAIT_SCRIPT} is
 * opened into it: a shell that waits for one command. The next command without a terminal
 * sends its argv (the same words the exec would carry: env, working directory, open-files limit)
 * as the first frame of stdin, then its stdin as usual, and runs at once.
 *
 * The command runs exactly as through its own exec: the same container, user and environment
 * (an exec's, set by the pod's spec; the waiting shell adds nothing), a session of its own, its
 * status as the exec's. The host writes the words; the sandbox can end a waiting shell (the caller
 * then opens its own exec), and a process of the sandbox's user could write into the shell's stdin
 * through /proc, as it can already signal or trace any command that user runs: nothing it could
 * not do before, and what comes back (output, status) is read as untrusted as ever.
 *
 * Kept per process (the warm server serves many requests, each with an engine of its own), one
 * per pod; a waiting stream holds no process open (its socket is unref'd until it is used). The
 * pod is watched while its exec waits: one deleted (behind moat's back too), ending or no longer
 * watched loses its waiting exec at once, so that a command never goes into a pod that is gone
 * (its container may outlive the pod's record for seconds) and hears "not running" as before.
 */

/** The first frame a waiting shell reads: the status mark, then the command, as shell words. */
export function commandFrame(mark: string, cmd: readonly string[]): Buffer {
  return stdinFrame(commandWords(mark, cmd));
}

interface Waiting {
  socket: Promise<WebSocket | undefined>;
  /** The pod the watch saw (its uid): a pod of the same name made later is another. */
  uid?: string;
  /** Taken by a command: the socket is the command's, nothing of the wait may end it any more. */
  taken?: boolean;
  /** The watch of the pod while its exec waits. */
  watch?: Promise<AbortController | undefined>;
  /** The shell said it runs (false: the exec was refused or ended first). */
  ready: Promise<boolean>;
  /** The pod's facts (its user, its open-files limit), so that a request's engine need not read the pod. */
  facts: { user: string; nofile?: number };
}

const waiting = new Map<string, Waiting>();

function rawSocket(socket: WebSocket): Socket | undefined {
  return (socket as unknown as { _socket?: Socket })._socket;
}

/**
 * Opens a waiting exec into the pod (`path`: its exec URL for {@link WAIT_SCRIPT}) unless one is
 * open or opening; resolves once its shell runs (true) or it failed (false). It is dropped when it
 * ends or says anything more while waiting (the shell died).
 */
export function openAhead(kc: KubeConfig, key: string, pod: { namespace: string; name: string; path: string }, facts: Waiting['facts']): Promise<boolean> {
  const open = waiting.get(key);
  if (open) return open.ready;
  let said: (ready: boolean) => void = () => undefined;
  // Ready once the shell said R and the watch has seen the pod, not on its way out.
  let shellRuns = false;
  let podRuns = false;
  let dropped = false;
  const drop = () => {
    // The watch's end (aborted when a command takes the exec) says nothing about the exec then.
    if (dropped || entry.taken) return;
    dropped = true;
    said(false);
    if (waiting.get(key) === entry) waiting.delete(key);
    void entry.socket.then((socket) => socket?.terminate());
    void entry.watch?.then((controller) => controller?.abort());
  };
  const settle = () => {
    if (shellRuns && podRuns && !dropped) said(true);
  };
  const entry: Waiting = {
    facts,
    ready: new Promise<boolean>((resolve) => (said = resolve)),
    socket: openExecSocket(kc, pod.path).then(
      (socket) => {
        rawSocket(socket)?.unref();
        // The API server sends each channel an empty frame first; then the shell's "R" on stdout;
        // anything more means the shell ended.
        socket.on('message', (data: Buffer) => {
          if (data.length <= 1) return;
          if (!shellRuns && data[0] === 1 && data.subarray(1).toString() === 'R') {
            shellRuns = true;
            settle();
          } else drop();
        });
        socket.once('close', drop);
        socket.once('error', drop);
        return socket;
      },
      () => {
        drop();
        return undefined;
      },
    ),
  };
  entry.watch = new Watch(kc)
    .watch(
      `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods`,
      { fieldSelector: `metadata.name=${pod.name}`, allowWatchBookmarks: false },
      (type: string, object: V1Pod) => {
        // Pending is not gone: the kubelet reports a started container late, the R is the proof.
        const phase = object.status?.phase;
        if (type === 'DELETED' || object.metadata?.deletionTimestamp != null || phase === 'Failed' || phase === 'Succeeded') return drop();
        entry.uid ??= object.metadata?.uid;
        if (object.metadata?.uid !== entry.uid) return drop();
        podRuns = true;
        settle();
      },
      drop,
    )
    .then(
      (controller) => controller,
      () => {
        drop();
        return undefined;
      },
    );
  waiting.set(key, entry);
  return entry.ready;
}

/**
 * The waiting exec of this pod, now the caller's (`podUid`: the pod's uid as a read finds it, or
 * undefined when it is gone or on its way out): the command's frame is sent on it, and the
 * socket is the caller's to run over (runOverSocket). Undefined when none is open.
 */
export async function takeAhead(
  key: string,
  cmd: readonly string[],
  podUid: () => Promise<string | undefined>,
): Promise<{ socket: WebSocket; mark: string } | undefined> {
  const entry = waiting.get(key);
  if (!entry) return undefined;
  // Not before its "R" (that byte is the waiting shell's, not the command's output) and the
  // watch's word that the pod is there.
  const ready = await entry.ready;
  if (waiting.get(key) !== entry) return undefined;
  // The watch's word may be a moment behind a deletion (the pod's containers outlive its record
  // for seconds): one read says the pod the exec waits in is still there, not on its way out.
  const uid = ready ? await podUid().catch(() => undefined) : undefined;
  if (waiting.get(key) !== entry) return undefined;
  if (uid === undefined || uid !== entry.uid) {
    dropAhead(key);
    return undefined;
  }
  waiting.delete(key);
  entry.taken = true;
  void entry.watch?.then((controller) => controller?.abort());
  const socket = await entry.socket;
  if (!socket || !ready || socket.readyState !== 1) {
    socket?.terminate();
    return undefined;
  }
  socket.removeAllListeners('message');
  socket.removeAllListeners('close');
  socket.removeAllListeners('error');
  rawSocket(socket)?.ref();
  const mark = statusMark();
  socket.send(commandFrame(mark, cmd));
  return { socket, mark };
}

/** The facts a waiting exec was opened with. */
export function aheadFacts(key: string): Waiting['facts'] | undefined {
  return waiting.get(key)?.facts;
}

/** The pod went: its waiting exec (if any) is closed. */
export function dropAhead(key: string): void {
  const entry = waiting.get(key);
  if (!entry) return;
  waiting.delete(key);
  void entry.socket.then((socket) => socket?.terminate());
  void entry.watch?.then((controller) => controller?.abort());
}

/** Whether a waiting exec into the pod is open or opening. */
export function hasAhead(key: string): boolean {
  return waiting.has(key);
}
