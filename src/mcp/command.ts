import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { Moat } from '../moat.js';
import { workspacePath } from '../domain/workspace-path.js';
import { MoatError } from '../errors.js';
import { CapturedOutput } from './captured-output.js';

export interface CommandRequest {
  task: string;
  command: string;
  cwd?: string;
  timeoutSeconds: number;
  outputBytes: number;
}

export interface CommandOutcome {
  task: string;
  command: string;
  /** The command's status; 128+N when a signal N ended it. */
  exitCode: number;
  timedOut: boolean;
  /** Stopped before its end: by a stop request, a cancel or the client going away. */
  stopped: boolean;
  explanation?: string;
  stdout: string;
  stderr: string;
  /** Bytes the command wrote, and what of them the result leaves out (the middle). */
  stdoutBytes: number;
  stderrBytes: number;
  truncated: boolean;
  durationMs: number;
  /** Commits on the task branch in your repository after the command's work came home. */
  commits?: number;
  syncWarning?: string;
}

/** Seconds between TERM and KILL for a command at its time limit or stopped. */
const GRACE_SECONDS = 5;

/**
 * A command running in a task: the service's exec (its work comes home afterwards, as after
 * `moat exec`), with the output kept within a budget and a way to stop it. The command runs in a
 * process group of its own (setsid) whose id it records in the sandbox's /tmp: a stop sends TERM
 * to that group, then KILL after a grace, and the snapshot that follows the command (the exec's
 * outer shell, outside the group) still brings the work home.
 */
export class RunningCommand {
  readonly startedAt = Date.now();
  readonly stdout: CapturedOutput;
  readonly stderr: CapturedOutput;
  readonly done: Promise<CommandOutcome>;
  private readonly pidFile = `/tmp/.moat-mcp-${randomBytes(6).toString('hex')}`;
  private stopping?: 'timeout' | 'stop';
  private finished = false;

  constructor(
    private readonly moat: Moat,
    readonly request: CommandRequest,
  ) {
    this.stdout = new CapturedOutput(request.outputBytes);
    this.stderr = new CapturedOutput(request.outputBytes);
    const workdir = request.cwd === undefined ? undefined : workspacePath(request.cwd);
    const cmd = ['setsid', '-w', 'sh', '-c', 'echo $$ > "$0"; bash -c "$1"; rc=$?; rm -f "$0"; exit $rc', this.pidFile, request.command];
    const timer = setTimeout(() => this.stop('timeout'), request.timeoutSeconds * 1000);
    this.done = moat
      .exec(request.task, cmd, { stdin: undefined, stdout: this.stdout, stderr: this.stderr }, { workdir })
      .then((result) => this.outcome(result.exitCode, result.explanation, result.sync))
      .finally(() => {
        this.finished = true;
        clearTimeout(timer);
      });
    this.done.catch(() => undefined);
  }

  get running(): boolean {
    return !this.finished;
  }

  /** TERM to the command's group, again each second (the group may not be recorded yet), KILL after the grace. */
  stop(why: 'timeout' | 'stop' = 'stop'): void {
    if (this.stopping || this.finished) return;
    this.stopping = why;
    const started = Date.now();
    const tick = () => {
      if (this.finished) return;
      const signal = Date.now() - started >= GRACE_SECONDS * 1000 ? 'KILL' : 'TERM';
      void this.signal(signal).finally(() => {
        if (!this.finished) setTimeout(tick, 1000).unref();
      });
    };
    tick();
  }

  private async signal(signal: 'TERM' | 'KILL'): Promise<void> {
    const record = await this.moat.context.store.get((await this.moat.context.repo()).key, this.request.task);
    if (!record?.containerId) return;
    const engine = await this.moat.context.engine();
    const sink = new PassThrough().resume();
    await engine
      .exec(
        record.containerId,
        { cmd: ['sh', '-c', '[ -s "$0" ] && kill -"$1" "-$(cat "$0")"', this.pidFile, signal], user: `${record.user.uid}:${record.user.gid}` },
        { stdout: sink, stderr: sink },
      )
      .catch(() => undefined);
  }

  /** What has come so far (for a poll of a command still running). */
  partial(): Pick<CommandOutcome, 'stdout' | 'stderr' | 'stdoutBytes' | 'stderrBytes' | 'truncated'> {
    const out = this.stdout.text();
    const err = this.stderr.text();
    return { stdout: out.text, stderr: err.text, stdoutBytes: out.bytes, stderrBytes: err.bytes, truncated: out.droppedBytes > 0 || err.droppedBytes > 0 };
  }

  private outcome(exitCode: number, explanation: string | undefined, sync: { commits: number; warning?: string } | undefined): CommandOutcome {
    const timedOut = this.stopping === 'timeout';
    return {
      task: this.request.task,
      command: this.request.command,
      exitCode,
      timedOut,
      stopped: this.stopping === 'stop',
      ...(timedOut ? { explanation: `stopped at the time limit of ${this.request.timeoutSeconds}s` } : explanation ? { explanation } : {}),
      ...this.partial(),
      durationMs: Date.now() - this.startedAt,
      ...(sync ? { commits: sync.commits } : {}),
      ...(sync?.warning ? { syncWarning: sync.warning } : {}),
    };
  }
}

/** Most background commands running at once in one server. */
const MAX_RUNNING = 16;
/** Finished background commands kept for a poll. */
const MAX_KEPT = 64;

/** Background commands of this server, by handle. */
export class BackgroundCommands {
  private readonly commands = new Map<string, RunningCommand>();

  start(moat: Moat, request: CommandRequest): string {
    const running = [...this.commands.values()].filter((c) => c.running).length;
    if (running >= MAX_RUNNING)
      throw new MoatError('E_USAGE', `${running} background commands are running already`, { hint: 'poll or stop one first (command_status, command_stop)' });
    const handle = `cmd-${randomBytes(8).toString('hex')}`;
    this.commands.set(handle, new RunningCommand(moat, request));
    // The oldest finished ones go first.
    for (const [old, command] of this.commands) {
      if (this.commands.size <= MAX_KEPT) break;
      if (!command.running) this.commands.delete(old);
    }
    return handle;
  }

  get(handle: string): RunningCommand {
    const command = this.commands.get(handle);
    if (!command)
      throw new MoatError('E_USAGE', `no background command ${JSON.stringify(handle)} in this server`, {
        hint: 'use the handle run_command returned with background: true (handles do not survive a restart of moat mcp)',
      });
    return command;
  }

  /** Every command stopped, and their work home: for the server's end. */
  async stopAll(): Promise<void> {
    for (const command of this.commands.values()) command.stop();
    await Promise.allSettled([...this.commands.values()].map((c) => c.done));
  }
}
