import { WORKSPACE_DIR } from '../domain/sandbox-spec.js';
import { workspacePath } from '../domain/workspace-path.js';
import type { MoatContext } from '../service/context.js';
import {
  deleteTaskFile,
  editTaskFile,
  failure,
  listTaskFiles,
  MAX_LIST_ENTRIES,
  MAX_READ_BYTES,
  MAX_WRITE_BYTES,
  parseListing,
  readTaskFile,
  taskContainer,
  writeTaskFile,
  type FileEntry,
} from '../service/task-files.js';
import { MoatError } from '../errors.js';
import { FileServerEnded, type FileAnswer, type FileServers } from './file-server.js';
import { readOnHost } from './host-read.js';

/**
 * The MCP file tools' operations: through the task's resident file server (file-server.ts) when
 * its sandbox can run one, else one exec per call (service/task-files.ts), which is also what
 * MOAT_MCP_FILE_SERVER=off chooses (benchmarks, and tests of that path). Both answer with the
 * same results and the same errors; both run as the sandbox user inside the sandbox, so neither
 * can reach a byte the sandbox cannot.
 */
export class WorkspaceFiles {
  constructor(
    private readonly ctx: MoatContext,
    private readonly servers: FileServers,
  ) {}

  async read(task: string, path: string, maxBytes = MAX_READ_BYTES): Promise<{ path: string; content: Buffer; size: number; truncated: boolean }> {
    const inside = workspacePath(path);
    const limit = Math.max(0, Math.min(maxBytes, MAX_READ_BYTES));
    const local = await this.readOnHost(task, inside, limit);
    if (local) return { path: inside, content: local.content, size: local.size, truncated: local.size > local.content.length };
    const answer = await this.ask(task, ['read', relative(inside), String(limit)], [20, limit]);
    if (!answer) return readTaskFile(this.ctx, task, path, maxBytes);
    this.check(answer, path, 'a regular file');
    const [sizeField, content = Buffer.alloc(0)] = answer.fields;
    const size = Math.max(Number(sizeField?.toString('latin1')) || 0, content.length);
    return { path: inside, content, size, truncated: size > content.length };
  }

  async list(task: string, path = '.', depth = 1, maxEntries = MAX_LIST_ENTRIES): Promise<{ path: string; entries: FileEntry[]; truncated: boolean }> {
    const inside = workspacePath(path);
    const levels = Math.max(1, Math.min(depth, 20));
    const answer = await this.ask(task, ['list', relative(inside), String(levels), String(maxEntries + 1)], [64 * 1024 * 1024]);
    if (!answer) return listTaskFiles(this.ctx, task, path, depth, maxEntries);
    this.check(answer, path, 'a directory');
    return { path: inside, ...parseListing(answer.fields[0] ?? Buffer.alloc(0), maxEntries) };
  }

  async write(task: string, path: string, content: Buffer): Promise<{ path: string; bytes: number }> {
    const inside = workspacePath(path);
    if (inside === WORKSPACE_DIR) throw failure(5, path, 'a file', '');
    if (content.length > MAX_WRITE_BYTES) return writeTaskFile(this.ctx, task, path, content); // which refuses it, as it always did
    const answer = await this.ask(task, ['write', relative(inside), content], [20]);
    if (!answer) return writeTaskFile(this.ctx, task, path, content);
    this.check(answer, path, 'a file that can be written');
    return { path: inside, bytes: content.length };
  }

  edit(task: string, path: string, search: string, replace: string, options: { all?: boolean } = {}) {
    return editTaskFile(this.ctx, task, path, search, replace, options, {
      read: (_ctx, t, p, max) => this.read(t, p, max),
      write: (_ctx, t, p, bytes) => this.write(t, p, bytes),
    });
  }

  async delete(task: string, path: string, options: { recursive?: boolean } = {}): Promise<{ path: string }> {
    const inside = workspacePath(path);
    if (inside === WORKSPACE_DIR) throw failure(6, path, '', '');
    const answer = await this.ask(task, ['delete', relative(inside), options.recursive ? 'recursive' : 'single'], []);
    if (!answer) return deleteTaskFile(this.ctx, task, path, options);
    this.check(answer, path, options.recursive ? 'something that can be deleted' : 'a file (a directory needs recursive)');
    return { path: inside };
  }

  /**
   * The file read by the host itself (host-read.ts), where the workspace is a host folder the
   * sandbox sees through a bind mount (not an engine volume, not under gVisor, whose own file
   * layer sits between the two); undefined when the sandbox's server is to answer.
   * MOAT_MCP_HOST_READ=off always asks the sandbox (benchmarks, and tests of that path).
   */
  private async readOnHost(task: string, inside: string, limit: number): Promise<{ content: Buffer; size: number } | undefined> {
    if (this.ctx.env.MOAT_MCP_HOST_READ === 'off') return undefined;
    const { record } = await taskContainer(this.ctx, task);
    if (record.workspace === 'volume' || record.isolation === 'gvisor') return undefined;
    const parts = relative(inside).split('/').filter(Boolean);
    return readOnHost(this.ctx.store.workspacePath(record.repoKey, record.name), parts, record.user.uid, limit);
  }

  /** The server's answer, or undefined when the call is to take one exec instead. */
  private async ask(task: string, fields: Array<string | Buffer>, caps: number[]): Promise<FileAnswer | undefined> {
    if (this.ctx.env.MOAT_MCP_FILE_SERVER === 'off') return undefined;
    const box = await taskContainer(this.ctx, task);
    // A server that ended on its own (idle, killed in the sandbox) between two calls gets one fresh start.
    for (let attempt = 0; ; attempt += 1) {
      const server = await this.servers.get(() => this.ctx.engine(), box.id, box.user);
      if (!server) return undefined;
      try {
        return await server.request(fields, caps);
      } catch (error) {
        // Ended twice: one exec says why (the container gone, say) in the engine's own words.
        if (error instanceof FileServerEnded && attempt > 0) return undefined;
        if (!(error instanceof FileServerEnded)) throw error instanceof MoatError ? error : engineFailed(error);
      }
    }
  }

  private check(answer: FileAnswer, path: string, what: string): void {
    if (answer.status !== 0) throw failure(answer.status, path, what, answer.fields[0]?.toString('utf8') ?? '');
  }
}

/** The path as the server takes it: relative to the workspace ('' for the workspace itself). */
function relative(inside: string): string {
  return inside === WORKSPACE_DIR ? '' : inside.slice(WORKSPACE_DIR.length + 1);
}

function engineFailed(error: unknown): MoatError {
  return new MoatError('E_ENGINE_FAILED', `the sandbox's file server failed: ${(error as Error).message}`, {
    hint: 'check the task with `moat ls`; `moat reset` starts a fresh container',
  });
}
