import { PassThrough } from 'node:stream';
import { WORKSPACE_DIR } from '../domain/sandbox-spec.js';
import type { ContainerEngine } from '../engine/engine.js';
import { MoatError } from '../errors.js';
import { FILE_SERVER_SCRIPT } from './file-server-script.js';

/** Seconds without a request after which the server in the sandbox leaves (a task's idle limit counts it while it runs). */
const IDLE_SECONDS = 30;
/** An answer that takes longer means the server is stuck (stopped by the agent, say): it is killed. */
const ANSWER_MS = 30_000;
/** Status of the exec when perl is not in the image: then every call takes one exec, as before. */
const NOT_FOUND = [126, 127];

/** The server ended before it answered (idle, killed by the agent, container gone): a fresh one may be asked. */
export class FileServerEnded extends Error {
  constructor() {
    super("the sandbox's file server ended before it answered");
  }
}

/** An answer of the server: its status (file-server-script.ts) and fields. */
export interface FileAnswer {
  status: number;
  fields: Buffer[];
}

/**
 * One resident file server in one task's container (file-server-script.ts), over the stdin and
 * stdout of one long-lived exec. Requests go one at a time, so answers cannot mix. Everything the
 * server sends is the sandbox's (the agent can replace the process): sizes are capped per request
 * before anything is buffered, and a server that breaks the protocol or stops answering is killed.
 */
export class FileServer {
  private readonly input = new PassThrough();
  private readonly output = new PassThrough();
  private chunks: Buffer[] = [];
  private buffered = 0;
  private wanted?: { bytes: number; resolve: (data: Buffer) => void; reject: (error: Error) => void };
  private queue: Promise<unknown> = Promise.resolve();
  private pid = 0;
  /** Resolves with the exec's status when it has ended. */
  readonly ended: Promise<number>;
  private gone = false;

  private constructor(
    private readonly engine: ContainerEngine,
    private readonly container: string,
    private readonly user: string,
  ) {
    const errors = new PassThrough().resume();
    this.output.on('data', (chunk: Buffer) => this.take(chunk));
    this.ended = engine
      .exec(
        container,
        { cmd: ['perl', '-e', FILE_SERVER_SCRIPT, String(IDLE_SECONDS)], user, workdir: WORKSPACE_DIR },
        { stdin: this.input, stdout: this.output, stderr: errors, endWithContainer: true },
      )
      .catch(() => -1)
      .then((status) => {
        this.gone = true;
        this.wanted?.reject(new FileServerEnded());
        this.wanted = undefined;
        return status;
      });
  }

  /** Starts a server; undefined when the sandbox cannot run one (no perl), with the exec's status. */
  static async start(engine: ContainerEngine, container: string, user: string): Promise<FileServer | { status: number }> {
    const server = new FileServer(engine, container, user);
    try {
      const hello = await within(server.answer([16]));
      server.pid = Number(hello.fields[0]?.toString('latin1'));
      if (hello.status !== 0 || !Number.isSafeInteger(server.pid) || server.pid <= 1) throw new Error('no pid');
      return server;
    } catch {
      server.stop();
      return { status: await server.ended };
    }
  }

  get alive(): boolean {
    return !this.gone;
  }

  /**
   * One request; `caps` are the most bytes each answer field may have. Rejects when the server
   * ended before answering (nothing was done if it ended before reading), and kills it when it
   * breaks the protocol or takes longer than {@link ANSWER_MS}.
   */
  request(fields: Array<string | Buffer>, caps: number[]): Promise<FileAnswer> {
    const run = this.queue.then(async () => {
      if (this.gone) throw new FileServerEnded();
      const parts = fields.map((f) => (typeof f === 'string' ? Buffer.from(f, 'utf8') : f));
      const head = Buffer.alloc(4);
      head.writeUInt32BE(parts.length);
      this.input.write(Buffer.concat([head, ...parts.flatMap((p) => [u32(p.length), p])]));
      try {
        return await within(this.answer(caps));
      } catch (error) {
        this.kill();
        throw error;
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Ends the server: its stdin closes, and a server that does not notice is killed. */
  stop(): void {
    this.input.end();
  }

  private kill(): void {
    this.stop();
    this.gone = true;
    if (this.pid > 1) void this.engine.execCapture(this.container, { cmd: ['kill', '-KILL', String(this.pid)], user: this.user }, 1024).catch(() => undefined);
  }

  private async answer(caps: number[]): Promise<FileAnswer> {
    const head = await this.read(8);
    const status = head.readUInt32BE(0);
    const count = head.readUInt32BE(4);
    // A failure carries one short field (a message, a link's target) whatever the request's caps.
    const limits = status === 0 ? caps : [4096];
    if (status > 8 || count > limits.length) throw protocol(`status ${status} with ${count} fields`);
    const fields: Buffer[] = [];
    for (let i = 0; i < count; i += 1) {
      const length = (await this.read(4)).readUInt32BE(0);
      if (length > limits[i]!) throw protocol(`a field of ${length} bytes`);
      fields.push(await this.read(length));
    }
    return { status, fields };
  }

  private take(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.deliver();
  }

  private deliver(): void {
    const wanted = this.wanted;
    if (!wanted || this.buffered < wanted.bytes) return;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = all.length > wanted.bytes ? [all.subarray(wanted.bytes)] : [];
    this.buffered -= wanted.bytes;
    this.wanted = undefined;
    wanted.resolve(all.subarray(0, wanted.bytes));
  }

  private read(bytes: number): Promise<Buffer> {
    if (this.gone && this.buffered < bytes) return Promise.reject(new FileServerEnded());
    return new Promise((resolve, reject) => {
      this.wanted = { bytes, resolve, reject };
      this.deliver();
    });
  }
}

/** The answer, or a failure after {@link ANSWER_MS}. */
async function within<T>(answer: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new MoatError('E_ENGINE_FAILED', `the sandbox's file server did not answer within ${ANSWER_MS / 1000} s`)), ANSWER_MS);
  });
  try {
    return await Promise.race([answer, late]);
  } finally {
    clearTimeout(timer);
  }
}

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

function protocol(what: string): MoatError {
  return new MoatError('E_ENGINE_FAILED', `the sandbox's file server answered out of protocol (${what})`, {
    hint: 'the next file tool call starts a fresh one; `moat reset` gives the task a fresh container',
  });
}

/**
 * The file servers of one MCP server process, one per container, started at a task's first file
 * call and forgotten when they end (idle, container gone, killed). Containers that cannot run
 * one are remembered, and their calls take one exec each.
 */
export class FileServers {
  private readonly servers = new Map<string, Promise<FileServer | undefined>>();
  private readonly unable = new Set<string>();

  /** The container's server, started if needed; undefined where none can run. */
  async get(engine: () => Promise<ContainerEngine>, container: string, user: string): Promise<FileServer | undefined> {
    if (this.unable.has(container)) return undefined;
    const key = `${container}\0${user}`;
    const known = await this.servers.get(key);
    if (known?.alive) return known;
    const started = (async () => {
      const server = await FileServer.start(await engine(), container, user);
      if (!(server instanceof FileServer)) {
        if (NOT_FOUND.includes(server.status)) this.unable.add(container);
        return undefined;
      }
      void server.ended.then(() => {
        if (this.servers.get(key) === started) this.servers.delete(key);
      });
      return server;
    })();
    this.servers.set(key, started);
    started.catch(() => this.servers.delete(key));
    return started;
  }

  /** Ends every server (the MCP client has gone). */
  async stopAll(): Promise<void> {
    const servers = await Promise.all([...this.servers.values()].map((s) => s.catch(() => undefined)));
    for (const server of servers) server?.stop();
    await Promise.all(servers.map((s) => s?.ended));
  }
}
