import { z } from 'zod';
import type { Moat } from '../moat.js';
import { MoatError } from '../errors.js';
import { MAX_WORKSPACE_PATH } from '../domain/workspace-path.js';
import { MAX_READ_BYTES, MAX_WRITE_BYTES } from '../service/task-files.js';
import { BackgroundCommands, RunningCommand, type CommandOutcome } from './command.js';
import { createOptions } from './policy.js';
import type { FileServers } from './file-server.js';
import { WorkspaceFiles } from './workspace-files.js';
import { filePage } from './file-page.js';
import { listPending, MAX_REASON, requestHost } from '../service/pending.js';

/** What a tool gets besides its arguments: a Moat for this call, its cancel, and its progress. */
export interface ToolCall {
  moat: Moat;
  signal: AbortSignal;
  /** Tells the client (when it asked for progress) how the call is going. */
  progress(message: string): void;
  jobs: BackgroundCommands;
  /** The tasks' resident file servers, kept across calls. */
  fileServers: FileServers;
}

const files = (call: ToolCall) => new WorkspaceFiles(call.moat.context, call.fileServers);

/** A result before it is made safe: data, and optionally the text a model reads first. */
export interface ToolOutput {
  data: Record<string, unknown>;
  /** Human-readable text (made safe by the server); default: the data as JSON. */
  text?: string[];
  /**
   * false: the data goes in the result's `_meta` (as `moat/result`), not in structuredContent,
   * for a result whose text is big (a file): clients that prefer structuredContent (Codex) then
   * read the text, as every other client does, and the bytes cross the pipe once.
   */
  structured?: false;
}

export interface ToolDefinition {
  name: string;
  title: string;
  description: string;
  input: z.ZodObject;
  annotations: { readOnlyHint?: boolean; destructiveHint?: boolean; idempotentHint?: boolean; openWorldHint?: boolean };
  run(args: Record<string, unknown>, call: ToolCall): Promise<ToolOutput>;
}

const task = z
  .string()
  .regex(/^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/, 'a task name: lowercase letters, digits and hyphens')
  .describe("The task's name, as create_task or list_tasks gave it.");
const path = z
  .string()
  .min(1)
  .max(MAX_WORKSPACE_PATH)
  .describe(
    'A path inside the task\'s workspace, relative to it (e.g. "src/app.ts"); "/workspace/…" is accepted too. Never a host path: ".." and links out of the workspace are refused.',
  );

function define<S extends z.ZodRawShape>(
  tool: Omit<ToolDefinition, 'input' | 'run'> & { input: S; run(args: z.infer<z.ZodObject<S>>, call: ToolCall): Promise<ToolOutput> },
): ToolDefinition {
  return { ...tool, input: z.strictObject(tool.input), run: tool.run as ToolDefinition['run'] };
}

function commandText(result: CommandOutcome | (Partial<CommandOutcome> & { running: true })): string[] {
  const status =
    'running' in result && result.running
      ? 'still running'
      : `exit ${result.exitCode}${result.timedOut ? ' (time limit reached)' : ''}${result.stopped ? ' (stopped)' : ''}`;
  const cut = result.truncated
    ? `; output cut to its first and last parts (stdout ${result.stdoutBytes} bytes, stderr ${result.stderrBytes} bytes in all): for all of it, redirect it to a file in the workspace (command > out.log 2>&1) and read that with read_file`
    : '';
  const commits = result.commits !== undefined ? `; ${result.commits} commit(s) on the task branch` : '';
  return [
    `${status}${result.explanation ? `: ${result.explanation}` : ''}${cut}${commits}`,
    `--- stdout ---\n${result.stdout ?? ''}`,
    `--- stderr ---\n${result.stderr ?? ''}`,
  ];
}

/** Runs a command in the foreground: progress while it runs, stopped on a cancel. */
async function foreground(command: RunningCommand, call: ToolCall): Promise<CommandOutcome> {
  const onAbort = () => command.stop();
  call.signal.addEventListener('abort', onAbort);
  const ticker = setInterval(() => {
    const seconds = Math.round((Date.now() - command.startedAt) / 1000);
    call.progress(`running for ${seconds}s; ${command.stdout.total + command.stderr.total} bytes of output so far`);
  }, 1000);
  try {
    if (call.signal.aborted) command.stop();
    return await command.done;
  } finally {
    clearInterval(ticker);
    call.signal.removeEventListener('abort', onAbort);
  }
}

export const TOOLS: ToolDefinition[] = [
  define({
    name: 'create_task',
    title: 'Create a sandbox task',
    description:
      'Creates a task: a branch moat/<name> in the user\'s repository, a workspace of its own and a hardened container that sees only that workspace, with no credentials inside. The network is "none" (default) or "allowlist": exactly the hosts the user\'s own config already allows; this tool cannot add hosts, limits, mounts, environment or secrets (the human does that at the CLI). Image builds report progress.',
    input: {
      title: z.string().min(1).max(200).describe('What the task is for; its words become the task name (with a random suffix).').optional(),
      base: z.string().min(1).max(200).describe("Branch, tag or commit to start from (default: the repository's HEAD).").optional(),
      template: z
        .string()
        .min(1)
        .max(100)
        .describe(
          'A template name (shell, node, python, go, rust, …). Templates that bring hosts or keys (agent templates) only when the human chose them in their config.',
        )
        .optional(),
      network: z
        .enum(['none', 'allowlist'])
        .describe('"none" (default: no network at all) or "allowlist" (only the hosts the user\'s config allows, through moat\'s audited gateway).')
        .optional(),
    },
    annotations: { destructiveHint: false, openWorldHint: false },
    async run(args, call) {
      const options = await createOptions(call.moat, args, call.signal);
      const record = await call.moat.up(options);
      return {
        data: {
          task: record.name,
          branch: record.branch,
          base: record.baseCommit,
          baseRef: record.baseRef,
          template: record.template,
          network: record.network,
          allow: record.egress?.allow ?? [],
          limits: record.limits,
          state: 'running',
        },
        text: [`task ${record.name} is up on branch ${record.branch} (network ${record.network}); run commands with run_command`],
      };
    },
  }),
  define({
    name: 'list_tasks',
    title: 'List tasks',
    description: 'The tasks of this repository: state, branch, commits brought home, network and egress counts.',
    input: {},
    annotations: { readOnlyHint: true },
    async run(_args, call) {
      const tasks = await call.moat.ls();
      return { data: { tasks: tasks.map(({ repoPath: _repo, containerId: _id, ...summary }) => summary) } };
    },
  }),
  define({
    name: 'show_task',
    title: 'Show a task',
    description: 'One task: state, limits, branch, commits on it, network and egress counts (allowed and denied attempts).',
    input: { task },
    annotations: { readOnlyHint: true },
    async run(args, call) {
      const found = (await call.moat.ls()).find((t) => t.name === args.task);
      if (!found) throw new MoatError('E_TASK_NOT_FOUND', `no task ${args.task} in this repository`, { hint: 'list_tasks shows the tasks' });
      const { repoPath: _repo, containerId: _id, ...summary } = found;
      return { data: summary };
    },
  }),
  define({
    name: 'run_command',
    title: 'Run a command in a task',
    description:
      "Runs a bash command in the task's sandbox (as its non-root user, in /workspace unless cwd says otherwise) and returns stdout, stderr and the exit status; output over the budget is cut in the middle and the result says so. Commits the command makes come home to the branch moat/<task> right after the result (the next call on the task waits for that). Long commands send progress notifications; at the time limit the command gets TERM, then KILL. With background: true it returns a handle at once: poll it with command_status, stop it with command_stop.",
    input: {
      task,
      command: z.string().min(1).max(65536).describe('The command line, run by bash -c.'),
      cwd: path.describe('Directory inside the workspace to run in (default: the workspace).').optional(),
      timeoutSeconds: z
        .number()
        .int()
        .min(1)
        .max(3600)
        .describe('Time limit in seconds (default 300); the command is stopped there and the result says so.')
        .optional(),
      background: z.boolean().describe('Return a handle at once instead of waiting (default false).').optional(),
      outputBytes: z
        .number()
        .int()
        .min(1024)
        .max(1024 * 1024)
        .describe('Budget per stream in bytes (default 262144).')
        .optional(),
    },
    annotations: { destructiveHint: true, openWorldHint: false },
    async run(args, call) {
      const request = {
        task: args.task,
        command: args.command,
        cwd: args.cwd,
        timeoutSeconds: args.timeoutSeconds ?? 300,
        outputBytes: args.outputBytes ?? 256 * 1024,
      };
      // A task that does not exist is said now, not by a poll later.
      await call.moat.context.store.require((await call.moat.context.repo()).key, args.task);
      if (args.background) {
        const handle = call.jobs.start(call.moat, request);
        return {
          data: { handle, task: args.task, running: true },
          text: [`started in the background: poll with command_status {"handle": "${handle}"}, stop with command_stop`],
        };
      }
      const result = await foreground(new RunningCommand(call.moat, request), call);
      return { data: { ...result }, text: commandText(result) };
    },
  }),
  define({
    name: 'command_status',
    title: 'Poll a background command',
    description: "A background command's state: running, or its exit status; its output so far (within its budget).",
    input: {
      handle: z
        .string()
        .regex(/^cmd-[0-9a-f]{16}$/)
        .describe('The handle run_command returned.'),
    },
    annotations: { readOnlyHint: true },
    async run(args, call) {
      const command = call.jobs.get(args.handle);
      if (command.running) {
        const partial = { ...command.partial(), running: true as const, task: command.request.task, runningMs: Date.now() - command.startedAt };
        return { data: partial, text: commandText(partial) };
      }
      const result = await command.done;
      return { data: { ...result, running: false }, text: commandText(result) };
    },
  }),
  define({
    name: 'command_stop',
    title: 'Stop a background command',
    description: 'Stops a background command (TERM, then KILL after 5 s) and returns its result; its work still comes home.',
    input: {
      handle: z
        .string()
        .regex(/^cmd-[0-9a-f]{16}$/)
        .describe('The handle run_command returned.'),
    },
    annotations: { destructiveHint: true },
    async run(args, call) {
      const command = call.jobs.get(args.handle);
      command.stop();
      const result = await command.done;
      return { data: { ...result, running: false }, text: commandText(result) };
    },
  }),
  define({
    name: 'read_file',
    title: 'Read a file of a task',
    description: `Reads a file of the task's workspace as the sandbox sees it (never a host path; links resolved inside the workspace only). Text comes with control and invisible characters shown escaped (\\x1b, \\u202e); ask for base64 for the exact bytes. At most the first ${MAX_READ_BYTES} bytes of a file, and what fits one message (about 4 MiB of text, 3 MiB in base64); offset and maxBytes read it a page at a time (smaller messages): a result that does not reach the end says the offset to read on from. The content is the first text item, the second says the path, the size, the bytes shown and whether more follows (the same as data in _meta["moat/result"]: path, size, truncated, encoding, shown bytes, and offset and nextOffset for a page).`,
    input: {
      task,
      path,
      encoding: z.enum(['text', 'base64']).describe('"text" (default, UTF-8, escaped for display) or "base64" (exact bytes).').optional(),
      maxBytes: z.number().int().min(1).max(MAX_READ_BYTES).describe(`Most bytes to return (default ${MAX_READ_BYTES}).`).optional(),
      offset: z
        .number()
        .int()
        .min(0)
        .max(MAX_READ_BYTES)
        .describe(`Byte of the file to start at (default 0; bytes past the first ${MAX_READ_BYTES} cannot be read): the nextOffset of the previous page.`)
        .optional(),
    },
    annotations: { readOnlyHint: true },
    async run(args, call) {
      const offset = args.offset ?? 0;
      // A page is the same read as a whole file (the same walk, checks and caps: nothing about
      // which bytes may be read depends on the offset), cut here.
      const file = await files(call).read(args.task, args.path, Math.min(offset + (args.maxBytes ?? MAX_READ_BYTES), MAX_READ_BYTES));
      const { data, text } = filePage(file, { offset: args.offset, encoding: args.encoding ?? 'text' });
      // The content once, as the first text item; what a program needs besides is in _meta (server.ts).
      return { data, text, structured: false };
    },
  }),
  define({
    name: 'list_files',
    title: 'List files of a task',
    description: "Lists a directory of the task's workspace (its .git is not entered), through the sandbox: path, type, size.",
    input: {
      task,
      path: path.describe('Directory inside the workspace (default: the workspace).').optional(),
      depth: z.number().int().min(1).max(20).describe('Levels to descend (default 1).').optional(),
    },
    annotations: { readOnlyHint: true },
    async run(args, call) {
      return { data: { ...(await files(call).list(args.task, args.path ?? '.', args.depth ?? 1)) } };
    },
  }),
  define({
    name: 'write_file',
    title: 'Write a file of a task',
    description: `Writes (creates or replaces) a file in the task's workspace, through the sandbox, its folders made as needed. Give content (UTF-8 text) or base64 (exact bytes), at most ${MAX_WRITE_BYTES} bytes.`,
    input: {
      task,
      path,
      content: z.string().max(MAX_WRITE_BYTES).describe("The file's text.").optional(),
      base64: z
        .string()
        .max(Math.ceil(MAX_WRITE_BYTES / 3) * 4)
        .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'base64')
        .describe("The file's bytes, base64-encoded.")
        .optional(),
    },
    annotations: { destructiveHint: true },
    async run(args, call) {
      if ((args.content === undefined) === (args.base64 === undefined))
        throw new MoatError('E_USAGE', 'give either content or base64', { hint: 'content for text, base64 for exact bytes' });
      const bytes = args.content !== undefined ? Buffer.from(args.content, 'utf8') : Buffer.from(args.base64!, 'base64');
      return { data: { ...(await files(call).write(args.task, args.path, bytes)) } };
    },
  }),
  define({
    name: 'edit_file',
    title: 'Edit a file of a task',
    description: "Replaces text in a UTF-8 file of the task's workspace: search must occur exactly once, unless all is true.",
    input: {
      task,
      path,
      search: z.string().min(1).max(MAX_WRITE_BYTES).describe('The exact text to replace, whitespace included.'),
      replace: z.string().max(MAX_WRITE_BYTES).describe('The text to put in its place.'),
      all: z.boolean().describe('Replace every occurrence (default: exactly one must exist).').optional(),
    },
    annotations: { destructiveHint: true },
    async run(args, call) {
      return { data: { ...(await files(call).edit(args.task, args.path, args.search, args.replace, { all: args.all })) } };
    },
  }),
  define({
    name: 'delete_file',
    title: 'Delete a file of a task',
    description:
      "Deletes a file or link (the link itself) of the task's workspace, or a directory with recursive: true. The workspace itself and its .git are not deleted.",
    input: { task, path, recursive: z.boolean().describe('Delete a directory and everything in it.').optional() },
    annotations: { destructiveHint: true },
    async run(args, call) {
      return { data: { ...(await files(call).delete(args.task, args.path, { recursive: args.recursive })) } };
    },
  }),
  define({
    name: 'diff_task',
    title: "Review a task's changes",
    description:
      "The task's work against its base (committed and uncommitted), brought home first: files changed, each with review flags (files a host tool may run or follow: hooks, CI, build scripts, links), and the patch (cut at 256 KiB, said so).",
    input: { task, patch: z.boolean().describe('Include the patch text (default true).').optional() },
    annotations: { readOnlyHint: true },
    async run(args, call) {
      const diff = await call.moat.diff(args.task, { patch: args.patch !== false, stat: true });
      const limit = 256 * 1024;
      const patch = diff.patch ?? '';
      const data = {
        task: diff.task,
        branch: diff.branch,
        base: diff.base,
        tip: diff.tip,
        commits: diff.commits,
        uncommitted: diff.uncommitted,
        files: diff.files,
        flagged: diff.flagged,
        stat: diff.stat,
        ...(args.patch !== false
          ? { patch: patch.length > limit ? patch.slice(0, limit) : patch, patchTruncated: patch.length > limit, patchBytes: Buffer.byteLength(patch) }
          : {}),
      };
      return { data };
    },
  }),
  define({
    name: 'egress_log',
    title: "A task's egress log",
    description: "Every outbound attempt of the task through moat's gateway, allowed or denied, newest last.",
    input: { task, limit: z.number().int().min(1).max(5000).describe('Most records, the newest (default 200).').optional() },
    annotations: { readOnlyHint: true },
    async run(args, call) {
      const records = await call.moat.egress(args.task);
      const limit = args.limit ?? 200;
      return { data: { task: args.task, total: records.length, records: records.slice(-limit) } };
    },
  }),
  define({
    name: 'request_host',
    title: 'Ask the human for a host',
    description:
      "Asks the human to let the task reach a host: the request waits in moat's approval queue (moat egress --pending, moat ui) until the human allows it (moat allow TASK HOST) or refuses it; this tool grants nothing and cannot answer. Only for a task with an allowlist network (a network itself is the human's to give). Returns at once; retry the connection after the human has allowed the host (pending_requests shows what still waits).",
    input: {
      task,
      host: z.string().min(1).max(253).describe('One DNS name, e.g. registry.npmjs.org (no IP address, wildcard or port).'),
      port: z.number().int().min(1).max(65535).describe('TCP port (default 443).').optional(),
      reason: z.string().min(1).max(MAX_REASON).describe('Why the task needs the host, in one plain sentence the human reads.').optional(),
    },
    annotations: { destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(args, call) {
      const repoKey = (await call.moat.context.repo()).key;
      const result = await requestHost(call.moat.context, { repoKey, task: args.task, host: args.host, port: args.port ?? 443, reason: args.reason });
      const host = result.request?.host ?? args.host.toLowerCase();
      const human = [`moat allow ${args.task} ${host}`, `moat deny ${args.task} ${host} --pending`];
      const text =
        result.status === 'allowed'
          ? `task ${args.task} already allows ${result.rule}: nothing to ask`
          : `${result.status === 'waiting' ? 'the same request already waits' : 'asked'}: the human sees it in moat egress --pending (or moat ui) and answers with ${human[0]} (or refuses with ${human[1]}); it expires at ${result.request!.expiresAt}. This tool grants nothing.`;
      return {
        data: {
          status: result.status,
          task: args.task,
          rule: result.rule,
          ...(result.request
            ? { id: result.request.id, expiresAt: result.request.expiresAt, human: { list: 'moat egress --pending', allow: human[0], deny: human[1] } }
            : {}),
        },
        text: [text],
      };
    },
  }),
  define({
    name: 'pending_requests',
    title: "A task's requests waiting for the human",
    description:
      "The task's requests that wait for the human's answer: hosts asked with request_host, and connections held by egress.ask. Read-only: only the human answers them (moat allow, moat deny, moat ui).",
    input: { task },
    annotations: { readOnlyHint: true },
    async run(args, call) {
      const ctx = call.moat.context;
      const repoKey = (await ctx.repo()).key;
      await ctx.store.require(repoKey, args.task);
      const requests = await listPending(ctx, { repoKey, task: args.task });
      return {
        data: {
          task: args.task,
          requests: requests.map((r) => ({
            id: r.id,
            method: r.method,
            host: r.host,
            port: r.port,
            time: r.time,
            expiresAt: r.expiresAt,
            standing: r.standing === true,
            ...(r.reason ? { reason: r.reason } : {}),
          })),
        },
      };
    },
  }),
  define({
    name: 'task_stats',
    title: "A task's resource use",
    description: "CPU, memory and processes of the task's container against its limits, workspace size, egress bytes and counts.",
    input: { task },
    annotations: { readOnlyHint: true },
    async run(args, call) {
      const [stats] = await call.moat.stats(args.task);
      return { data: { ...stats } };
    },
  }),
  define({
    name: 'reset_task',
    title: 'Reset a task',
    description:
      'A fresh container over the same workspace (its work is brought home first): the answer to a sandbox in a bad state. Same limits and network as before.',
    input: { task },
    annotations: { destructiveHint: true, idempotentHint: true },
    async run(args, call) {
      const record = await call.moat.reset(args.task);
      return { data: { task: record.name, branch: record.branch, state: record.state, network: record.network } };
    },
  }),
  define({
    name: 'remove_task',
    title: 'Remove a task',
    description:
      "Removes a task (container, workspace, branch) after bringing its work home. Refused while its branch has commits the user has not merged: merging, and discarding unmerged work, are the human's.",
    input: { task },
    annotations: { destructiveHint: true },
    async run(args, call) {
      try {
        return { data: { ...(await call.moat.rm(args.task, { force: false })) } };
      } catch (error) {
        if ((error as MoatError).code === 'E_CONFIRM') {
          throw new MoatError('E_CONFIRM', `${(error as MoatError).message}; removing it over MCP would lose them`, {
            hint: `the human reviews them (moat diff ${args.task}) and merges (moat merge ${args.task}) or discards them (moat rm --force ${args.task})`,
          });
        }
        throw error;
      }
    },
  }),
];

/**
 * Offered only when the user's own config says `mcp: { merge: true }` (a repository cannot, and
 * the server reads the setting at each call). Even then the model never confirms for the human:
 * work that touches a file a host tool may run or follow is refused here, whatever it sends.
 */
export const MERGE_TOOL = define({
  name: 'merge_task',
  title: 'Merge a task',
  description:
    "Merges the task's committed work into the user's current branch (the user enabled this in their own config). Refused on uncommitted changes in the user's checkout, on conflicts (nothing is changed), and when the work touches files a host tool may run or follow (git hooks and attributes, build scripts, CI, editor tasks…): the human merges those after reviewing them.",
  input: {
    task,
    strategy: z
      .enum(['merge', 'squash', 'rebase'])
      .optional()
      .describe('merge (default): a merge commit; squash: one commit; rebase: the commits replayed on the current branch.'),
  },
  annotations: { destructiveHint: false, idempotentHint: true },
  async run(args, call) {
    try {
      const merged = await call.moat.merge(args.task, { strategy: args.strategy, yes: false });
      return { data: { ...merged } };
    } catch (error) {
      if ((error as MoatError).code === 'E_CONFIRM') {
        throw new MoatError('E_CONFIRM', `${(error as MoatError).message}; that merge is the human's`, {
          hint: `the human reviews them (moat diff ${args.task}) and merges with moat merge ${args.task} --yes`,
        });
      }
      throw error;
    }
  },
});
