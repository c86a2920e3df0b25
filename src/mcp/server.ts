import type { Readable, Writable } from 'node:stream';
import { z } from 'zod';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import { Moat } from '../moat.js';
import { isMoatError } from '../errors.js';
import type { ContainerEngine } from '../engine/engine.js';
import { RepositoryCache } from '../workspace/user-repo.js';
import { PendingSyncs } from '../service/pending-sync.js';
import { terminalJson } from '../domain/terminal-text.js';
import { MOAT_VERSION } from '../version.js';
import { BackgroundCommands } from './command.js';
import { McpAudit } from './audit.js';
import { FileServers } from './file-server.js';
import { checkArgumentNames } from './policy.js';
import { SafeText } from './safe-text.js';
import { LineTransport } from './stdio-transport.js';
import { MERGE_TOOL, TOOLS, type ToolCall, type ToolDefinition } from './tools.js';

export interface McpServeOptions {
  /** Where the repository is (the directory moat mcp was started in, or --repo). */
  cwd: string;
  env?: NodeJS.ProcessEnv;
  stdin: Readable;
  stdout: Writable;
  /** The server's own notes (never the protocol's stdout). */
  log: (line: string) => void;
  /** Supplies the engine (tests); default: found as for every command. */
  engine?: () => Promise<ContainerEngine>;
}

const INSTRUCTIONS =
  "moat runs code in hardened, disposable sandboxes of this repository: each task has its own branch moat/<task>, a container that sees only its workspace, no credentials, and no network unless the user's config allows hosts. " +
  'Create a task, run commands and edit files in it; commits come home to its branch. This server never widens a sandbox (hosts, network, limits, mounts, environment, secrets), never reads a host path, never merges or pushes: those stay with the human at the CLI (moat allow, moat merge, moat push), except merge_task when the user config enables it (it is then in tools/list).';

const RESOURCE = /^moat:\/\/tasks\/([a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?)\/(diff|egress)$/;

/** Tool names a client may try for what only the human does, and what the human runs. */
const HUMAN_ONLY: Record<string, string> = {
  merge: 'moat merge TASK',
  push: 'moat push TASK',
  allow: 'moat allow TASK HOST',
  approve: 'moat approve',
  apply: 'moat apply TASK',
  answer: 'moat allow TASK HOST, moat allow TASK HOST --once, moat deny TASK HOST --pending, or moat ui',
  grant: 'moat allow TASK HOST',
  deny: 'moat deny TASK HOST',
};

/** Serves MCP on the given streams until the client goes away (or the process is told to stop). */
export async function serveMcp(options: McpServeOptions): Promise<void> {
  const env = options.env ?? process.env;
  const secrets = new Set<string>();
  const safe = new SafeText(secrets);
  const repos = new RepositoryCache();
  // Fails here, before serving, when the directory is not a git repository.
  const { context } = new Moat({ cwd: options.cwd, env, repos });
  const repo = await context.repo();
  const repoPath = repo.path;
  const audit = new McpAudit(context.store.mcpAuditPath(repo.key), safe);
  /** Every refused or failed call goes to the MCP audit log; a log that cannot be written is only noted. */
  const note = (tool: string, args: Record<string, unknown>, code: string, message: string) =>
    audit.record({ tool, args, code, message }).catch((error: Error) => options.log(`moat mcp: audit log not written: ${safe.line(error.message)}`));
  let engine: Promise<ContainerEngine> | undefined;
  const engineFactory = options.engine ?? (async () => (await import('../engine/open-engine.js')).openEngine(env));
  const sharedEngine = () => {
    engine ??= engineFactory();
    // A failed lookup (engine down) is tried again by the next call.
    engine.catch(() => (engine = undefined));
    return engine;
  };
  // As on the CLI's warm server, a command's work comes home right after its result has gone out
  // (the snapshot itself is taken in the command's exec), and the next call on the task waits for it.
  const syncs = new PendingSyncs();
  const moatFor = (progress: (line: string) => void, statusSent: Promise<void> = Promise.resolve()) =>
    new Moat({ cwd: repoPath, env, progress, secretValues: secrets, engine: sharedEngine, repos, syncs, statusSent });
  const jobs = new BackgroundCommands();
  const fileServers = new FileServers();
  const inFlight = new Set<Promise<unknown>>();

  const server = new Server({ name: 'moat', version: MOAT_VERSION }, { capabilities: { tools: {}, resources: {} }, instructions: INSTRUCTIONS });

  // Merge over MCP is the user's to enable, in their config only, read at each call: turned off,
  // it is gone at once. An unreadable config enables nothing.
  const tools = async (): Promise<ToolDefinition[]> => {
    const user = await moatFor(() => undefined)
      .context.userConfig()
      .catch(() => undefined);
    return user?.mcp?.merge === true ? [...TOOLS, MERGE_TOOL] : TOOLS;
  };

  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: (await tools()).map((tool) => {
      const { $schema: _schema, ...inputSchema } = z.toJSONSchema(tool.input, { io: 'input' }) as Record<string, unknown>;
      return {
        name: tool.name,
        title: tool.title,
        description: tool.description,
        inputSchema: inputSchema as { type: 'object' },
        annotations: { title: tool.title, ...tool.annotations },
      };
    }),
  }));

  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const name = request.params.name;
    const tool = (await tools()).find((t) => t.name === name);
    const args = (request.params.arguments ?? {}) as Record<string, unknown>;
    if (!tool) {
      const human = Object.entries(HUMAN_ONLY).find(([word]) => name.toLowerCase().includes(word))?.[1];
      const message = `unknown tool ${safe.line(JSON.stringify(name.slice(0, 100)))}${human ? `: that is the human's to do (${human})` : ''}; tools/list shows the tools`;
      await note(name, args, 'InvalidParams', message);
      throw new McpError(ErrorCode.InvalidParams, message);
    }
    const token = request.params._meta?.progressToken;
    let step = 0;
    const call: ToolCall = {
      moat: undefined as unknown as Moat,
      signal: extra.signal,
      jobs,
      fileServers,
      progress: (message) => {
        if (token === undefined || extra.signal.aborted) return;
        step += 1;
        void extra
          .sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: step, message: safe.line(message) } })
          .catch(() => undefined);
      },
    };
    let sent!: () => void;
    call.moat = moatFor(call.progress, new Promise<void>((resolve) => (sent = resolve)));
    const work = (async (): Promise<CallToolResult> => {
      try {
        const unknown = checkArgumentNames(name, args, Object.keys(tool.input.shape));
        if (unknown.length > 0)
          throw new McpError(
            ErrorCode.InvalidParams,
            `${name} has no argument ${safe.line(JSON.stringify(unknown[0]!.slice(0, 100)))}; tools/list shows its arguments`,
          );
        const parsed = tool.input.safeParse(args);
        if (!parsed.success)
          throw new McpError(ErrorCode.InvalidParams, `invalid arguments for ${name}: ${safe.line(z.prettifyError(parsed.error).replace(/\n/g, '; '))}`);
        const output = await tool.run(parsed.data as Record<string, unknown>, call);
        const data = safe.value(output.data);
        const text = output.text ? output.text.map((t) => safe.lines(t)) : [JSON.stringify(data, null, 2)];
        const content = text.map((t) => ({ type: 'text' as const, text: t }));
        return output.structured === false ? { content, _meta: { 'moat/result': data } } : { content, structuredContent: data };
      } catch (error) {
        if (error instanceof McpError) {
          await note(name, args, 'InvalidParams', error.message);
          throw error;
        }
        const result = toolError(error, safe);
        const { code, message } = (result.structuredContent as { error: { code: string; message: string } }).error;
        await note(name, args, code, message);
        return result;
      }
    })();
    inFlight.add(work);
    try {
      return await work;
    } finally {
      inFlight.delete(work);
      // The SDK writes the response once this handler has returned.
      setImmediate(sent);
    }
  });

  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [
      {
        uriTemplate: 'moat://tasks/{task}/diff',
        name: 'task-diff',
        title: "A task's diff",
        description: "The task's work against its base, as a patch (its work brought home first).",
        mimeType: 'text/x-diff',
      },
      {
        uriTemplate: 'moat://tasks/{task}/egress',
        name: 'task-egress',
        title: "A task's egress log",
        description: 'Every outbound attempt of the task, one JSON object per line.',
        mimeType: 'application/x-ndjson',
      },
    ],
  }));

  server.setRequestHandler(ListResourcesRequestSchema, async () => {
    const tasks = await moatFor(() => undefined).ls();
    return {
      resources: tasks.flatMap((task) => [
        { uri: `moat://tasks/${task.name}/diff`, name: `${task.name} diff`, mimeType: 'text/x-diff' },
        { uri: `moat://tasks/${task.name}/egress`, name: `${task.name} egress`, mimeType: 'application/x-ndjson' },
      ]),
    };
  });

  server.setRequestHandler(ReadResourceRequestSchema, async (request) => {
    const uri = request.params.uri;
    const match = RESOURCE.exec(uri);
    if (!match)
      throw new McpError(
        ErrorCode.InvalidParams,
        `unknown resource ${safe.line(JSON.stringify(uri.slice(0, 200)))}; resources are moat://tasks/<task>/diff and moat://tasks/<task>/egress`,
      );
    const [, task, kind] = match;
    const moat = moatFor(() => undefined);
    try {
      if (kind === 'diff') {
        const diff = await moat.diff(task!, { patch: true });
        return { contents: [{ uri, mimeType: 'text/x-diff', text: safe.lines(diff.patch ?? '') }] };
      }
      const records = await moat.egress(task!);
      // terminalJson keeps each line the same JSON data while no raw control reaches a display.
      return { contents: [{ uri, mimeType: 'application/x-ndjson', text: records.map((r) => safe.lines(terminalJson(JSON.stringify(r)))).join('\n') }] };
    } catch (error) {
      if (isMoatError(error)) throw new McpError(ErrorCode.InvalidParams, safe.line(`${error.message} (${error.hint ?? ''})`));
      throw error;
    }
  });

  const transport = new LineTransport(options.stdin, options.stdout);
  const closed = new Promise<void>((resolve) => {
    server.onclose = () => resolve();
  });
  server.onerror = (error) => options.log(`moat mcp: ${safe.line(error.message)}`);
  const stop = () => void transport.close();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await server.connect(transport);
  await closed;
  // The client is gone: its calls were cancelled (their commands get TERM), and the background
  // commands stop too; their work comes home before the server leaves.
  await Promise.allSettled([jobs.stopAll(), ...inFlight]);
  await fileServers.stopAll();
  await syncs.waitAll();
  process.off('SIGTERM', stop);
  process.off('SIGINT', stop);
}

/** A failure as a tool result: what went wrong and what to do, one line each. */
function toolError(error: unknown, safe: SafeText): CallToolResult {
  if (isMoatError(error)) {
    const data = safe.value(error.toJSON());
    return {
      isError: true,
      content: [{ type: 'text', text: safe.line(`${error.code}: ${error.message}`) + (error.hint ? `\nhint: ${safe.line(error.hint)}` : '') }],
      structuredContent: { error: data },
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return {
    isError: true,
    content: [{ type: 'text', text: safe.line(`E_INTERNAL: ${message}`) }],
    structuredContent: { error: { code: 'E_INTERNAL', message: safe.line(message) } },
  };
}
