import type { Readable, Writable } from 'node:stream';
import { Command, CommanderError } from 'commander';
import { Moat } from '../moat.js';
import { poolSize, type TaskPool } from '../service/task-pool.js';
import type { PendingSyncs } from '../service/pending-sync.js';
import type { RepositoryCache } from '../workspace/user-repo.js';
import type { ProcessCaches } from '../service/process-caches.js';
import { MOAT_VERSION } from '../version.js';
import { ExitCode, MoatError } from '../errors.js';
import { registerAgent, registerExec } from './commands/exec.js';
import { registerInspect } from './commands/inspect.js';
import { registerLifecycle } from './commands/lifecycle.js';
import { registerReview } from './commands/review.js';
import { registerEgress } from './commands/egress.js';
import { registerMcp } from './commands/mcp.js';
import { registerPort } from './commands/port.js';
import { registerUi } from './commands/ui.js';
import { createOutput, reportError, type Output } from './output.js';

export interface CliContext {
  output(json?: boolean): Output;
  moat(out: Output): Moat;
  setExit(code: number): void;
  readonly io: CliIO;
}

/**
 * Where a command's input and output are and where it runs: this process's own, or, on the warm
 * server (server.ts), a client's. A client's commands never get a terminal: those run in the client.
 */
export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  /** Is the caller's stdin a terminal (then a command without --tty does not read it). */
  stdinIsTTY: boolean;
  /** Ctrl-C or a TERM of the caller; returns the unsubscribe. */
  onSignal(listener: (signal: 'INT' | 'TERM') => void): () => void;
  /** Leave now (a second Ctrl-C). */
  abort(code: number): void;
  /** Is this the process's own terminal (raw mode and resizing are possible). */
  local: boolean;
  cwd?: string;
  /** The warm server's tasks made ahead of time. */
  pool?: TaskPool;
  /** The warm server's syncs under way, and when this command's status has gone out (pending-sync.ts). */
  syncs?: PendingSyncs;
  statusSent?: Promise<void>;
  repos?: RepositoryCache;
  /** The warm server's answers kept between commands (process-caches.ts). */
  caches?: ProcessCaches;
}

function processIO(): CliIO {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    stdinIsTTY: Boolean(process.stdin.isTTY),
    onSignal: (listener) => {
      const handlers = (['SIGINT', 'SIGTERM'] as const).map((signal) => {
        const handler = () => listener(signal === 'SIGINT' ? 'INT' : 'TERM');
        process.on(signal, handler);
        return [signal, handler] as const;
      });
      return () => {
        for (const [signal, handler] of handlers) process.off(signal, handler);
      };
    },
    abort: (code) => process.exit(code),
    local: true,
  };
}

/** `moat --engine X`: the engine travels in the command's environment, as MOAT_ENGINE would (open-engine.ts). */
function engineEnv(engine: string | undefined): { env?: NodeJS.ProcessEnv } {
  return engine === undefined ? {} : { env: { ...process.env, MOAT_ENGINE: engine } };
}

/** Runs the CLI; returns the exit code (the child's for exec/run/shell). */
export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  let exitCode: number = ExitCode.ok;
  let json = argv.includes('--json');
  const secrets = new Set<string>();
  const cli: CliContext = {
    output: (wantJson) => {
      json = Boolean(wantJson);
      return createOutput(json, () => secrets, io.stdout, io.stderr);
    },
    // The secret values this command reads are redacted from everything it prints, errors included.
    moat: (out) =>
      new Moat({
        progress: (line) => out.note(line),
        secretValues: secrets,
        cwd: io.cwd,
        pool: io.pool,
        syncs: io.syncs,
        statusSent: io.statusSent,
        repos: io.repos,
        caches: io.caches,
        ...engineEnv(program.opts<{ engine?: string }>().engine),
      }),
    setExit: (code) => {
      exitCode = code;
    },
    io,
  };

  const program = new Command('moat')
    .description('Run AI code agents in hardened, disposable sandboxes: one git branch, one container, no credentials, no way out.')
    .version(MOAT_VERSION)
    .enablePositionalOptions()
    .showSuggestionAfterError()
    .option('--engine <engine>', 'container engine for this command: docker, podman or kubernetes (default: MOAT_ENGINE, then `engine` in your config)')
    .exitOverride()
    .configureOutput({ writeOut: (text) => io.stdout.write(text), writeErr: (text) => io.stderr.write(text), outputError: () => undefined })
    .addHelpText(
      'after',
      "\nExit codes: 0 ok, 1 failure, 2 usage, 3 config, 4 engine, 5 git, 6 not found, 7 conflict, 70 internal,\n130 cancelled by Ctrl-C (143 by TERM); exec, run and shell exit with the command's own status (128+N when killed by signal N).\n\nEnvironment: MOAT_HOME and MOAT_CONFIG move moat's files; MOAT_SERVER=off runs every command in its own\nprocess (no warm server, nothing made ahead); MOAT_POOL=off keeps the warm server but makes nothing\nahead (MOAT_POOL=N: N tasks made ahead per request shape, default 1); MOAT_SERVER_IDLE_SECONDS (default 300) is how long the warm server waits for the next command.",
    );
  registerLifecycle(program, cli);
  registerExec(program, cli);
  registerAgent(program, cli);
  registerInspect(program, cli);
  registerReview(program, cli);
  registerEgress(program, cli);
  registerMcp(program, cli);
  registerPort(program, cli);
  registerUi(program, cli);

  try {
    // A bad MOAT_POOL is refused by every command, as the warm server that reads it cannot say so.
    poolSize(process.env.MOAT_POOL);
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0 || error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return ExitCode.ok;
      return reportError(
        new MoatError('E_USAGE', error.message.replace(/^error: /, ''), {
          hint: 'see moat <command> --help; a command to run in the sandbox goes after --, e.g. moat exec TASK -- npm test',
        }),
        json,
        secrets,
        io.stdout,
        io.stderr,
      );
    }
    return reportError(error, json, secrets, io.stdout, io.stderr);
  }
  return exitCode;
}
