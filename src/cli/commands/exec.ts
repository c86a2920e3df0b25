import type { Command } from 'commander';
import { ExitCode } from '../../errors.js';
import { parseIsolation } from '../../domain/isolation.js';
import type { ExecIO } from '../../engine/engine.js';
import type { ExecResult } from '../../service/exec.js';
import type { CliContext } from '../main.js';
import { assertNetworkMode } from '../../service/egress.js';
import { terminalLines } from '../../domain/terminal-text.js';
import { endAll, sandboxStream } from '../output.js';
import { upstreamFailureLine } from '../../domain/upstream-failure.js';
import { cancelOnSignal } from '../cancel.js';

/** Wires the caller to a command in the sandbox: raw mode and resize for a TTY, plain pipes otherwise. */
function terminalIO(cli: CliContext, tty: boolean): { io: ExecIO; restore: () => void } {
  const { stdin, stdinIsTTY } = cli.io;
  const terminal = cli.io.local && tty && stdinIsTTY ? process.stdin : undefined;
  const attachStdin = tty || !stdinIsTTY;
  terminal?.setRawMode(true);
  const io: ExecIO = {
    stdin: attachStdin ? stdin : undefined,
    stdout: cli.io.stdout,
    stderr: cli.io.stderr,
    // Ctrl-C (or a TERM to moat) goes to the command; a second one leaves at once.
    onInterrupt: (listener) => {
      let count = 0;
      return cli.io.onSignal((signal) => {
        count += 1;
        if (count > 1) cli.io.abort(ExitCode.interrupted);
        else listener(signal);
      });
    },
    size: () => ({ rows: process.stdout.rows ?? 24, columns: process.stdout.columns ?? 80 }),
    onResize: (listener) => {
      if (!cli.io.local) return () => undefined;
      process.stdout.on('resize', listener);
      return () => process.stdout.off('resize', listener);
    },
  };
  return {
    io,
    restore: () => {
      terminal?.setRawMode(false);
      stdin.pause();
    },
  };
}

/**
 * A TTY only when the caller's stdin is a terminal. Without one (a script, a pipe, CI), the
 * command runs with plain pipes, its output printed and its status passed through as usual, and
 * one note says so: a TTY there could never see the end of its input.
 */
function useTTY(cli: CliContext, asked: boolean, flag?: string): boolean {
  if (!asked) return false;
  if (cli.io.stdinIsTTY) return true;
  cli.output(false).note(`stdin is not a terminal: running without a TTY${flag ? ` (${flag} ignored)` : ''}`);
  return false;
}

function report(cli: CliContext, result: ExecResult): number {
  const out = cli.output(false);
  if (result.explanation) out.note(`${result.task}: command ${result.explanation}`);
  if (result.sync?.warning) out.note(result.sync.warning);
  return result.exitCode;
}

/** passThroughOptions keeps the `--` that separates moat's options from the command. */
function stripDashes(command: string[]): string[] {
  return command[0] === '--' ? command.slice(1) : command;
}

export function registerExec(program: Command, cli: CliContext): void {
  program
    .command('exec')
    .description("run a command in a task's sandbox; its exit status is moat's")
    .argument('<task>')
    .argument('<command...>', 'command and arguments, after --')
    .option('-t, --tty', 'allocate a terminal (only when stdin is one; otherwise plain pipes, with a note)')
    .option('-w, --workdir <dir>', 'working directory inside (default /workspace)')
    .option('--no-sync', 'do not bring commits home afterwards')
    .addHelpText(
      'after',
      '\nExamples:\n  moat exec fix-login -- npm test\n  echo data | moat exec fix-login -- wc -c\n  moat exec -t fix-login -- top   # -t from a script or pipe runs without a TTY and says so',
    )
    .action(async (task: string, command: string[], opts: { tty?: boolean; workdir?: string; sync: boolean }) => {
      const tty = useTTY(cli, Boolean(opts.tty), '-t');
      const { io, restore } = terminalIO(cli, tty);
      try {
        const result = await cli.moat(cli.output(false)).exec(task, stripDashes(command), io, { tty, workdir: opts.workdir, sync: opts.sync });
        cli.setExit(report(cli, result));
      } finally {
        restore();
      }
    });

  program
    .command('shell')
    .description("the task's interactive program with a TTY: the agent's own UI for agent templates, a shell otherwise")
    .argument('<task>')
    .option('--bash', 'a plain shell even in an agent template')
    .addHelpText('after', "\nExamples:\n  moat shell fix-login\n  moat up -t codex --task cx && moat shell cx   # Codex's own TUI, sandboxed")
    .action(async (task: string, opts: { bash?: boolean }) => {
      const tty = useTTY(cli, true);
      const { io, restore } = terminalIO(cli, tty);
      try {
        const moat = cli.moat(cli.output(false));
        const command = opts.bash ? ['bash', '-l'] : await moat.interactiveCommand(task);
        const result = await moat.exec(task, command, io, { tty });
        cli.setExit(report(cli, result));
      } finally {
        restore();
      }
    });

  program
    .command('run')
    .description('up + exec + down in one step; a task with work stays (branch and commits), one without is removed')
    .argument('<command...>', 'command and arguments, after --')
    .option('--task <name>', 'task name (default: generated)')
    .option('-t, --template <name>', 'template')
    .option('--base <ref>', 'branch, tag or commit to start from (default: HEAD)')
    .option('--tty', 'allocate a terminal (only when stdin is one; otherwise plain pipes, with a note)')
    .option('--keep', 'keep the task even if it left no commits and no uncommitted work')
    .option('--rm', 'remove the task if it left no work (the default; a task with work is always kept)')
    .option('--network <mode>', 'none (default), allowlist or open')
    .option('--isolation <kind>', 'runc (default) or gvisor (default: MOAT_ISOLATION, your config)')
    .option(
      '-e, --env <name>',
      'pass a variable of yours by name, or NAME=value (repeatable)',
      (value: string, all: string[]) => [...all, value],
      [] as string[],
    )
    .option('--allow <host>', 'allow a host (repeatable; implies --network allowlist)', (value: string, all: string[]) => [...all, value], [] as string[])
    .option(
      '--ask',
      'hold a connection to a host neither allowed nor denied until you answer (moat egress --pending, moat allow TASK HOST --once, moat ui); implies --network allowlist',
    )
    .addHelpText(
      'after',
      '\nA task that left no commits and no uncommitted work is removed afterwards (--keep keeps it);\none with work stays, stopped, with its branch: see it with moat diff TASK. Ctrl-C before the\ncommand starts cancels the run and removes what it had made; during the command it goes to the command.\n\nExamples:\n  moat run -- make test\n  moat run --task try-fix -- sh -c "./fix.sh && git commit -am fix"\n  moat run --keep --task probe -- ./probe.sh   # keep the task to look at afterwards',
    )
    .action(
      async (
        command: string[],
        opts: {
          task?: string;
          template?: string;
          base?: string;
          tty?: boolean;
          rm?: boolean;
          keep?: boolean;
          network?: string;
          allow: string[];
          ask?: boolean;
          env: string[];
          isolation?: string;
        },
      ) => {
        const network = assertNetworkMode(opts.network) ?? (opts.allow.length > 0 || opts.ask ? 'allowlist' : undefined);
        const tty = useTTY(cli, Boolean(opts.tty), '--tty');
        // Ctrl-C while the task is being made cancels the run; once the command runs, it gets the
        // Ctrl-C; while the work is brought home afterwards, a first one is held (a second leaves).
        const cancel = cancelOnSignal(cli);
        const { io, restore } = terminalIO(cli, tty);
        try {
          const result = await cli.moat(cli.output(false)).run(stripDashes(command), io, {
            task: opts.task,
            template: opts.template,
            base: opts.base,
            tty,
            rm: opts.rm,
            keep: opts.keep,
            network,
            allow: opts.allow,
            ask: opts.ask,
            env: opts.env,
            isolation: parseIsolation(opts.isolation, '--isolation'),
            signal: cancel.signal,
            onCommand: (phase) => (phase === 'started' ? cancel.commandStarted() : cancel.commandEnded()),
          });
          const out = cli.output(false);
          const commits = result.sync?.commits ?? 0;
          const finished = `task ${result.task} finished (exit ${result.exitCode})`;
          if (result.removed) out.note(`${finished} and was removed: it left no work (--keep keeps it)`);
          else if (result.work)
            out.note(
              `${finished}; ${commits} commit(s) on ${result.branch}${result.sync?.wip ? ', and uncommitted work' : result.sync?.skippedLarge ? `, and ${result.sync.skippedLarge} uncommitted file(s) over 50 MiB` : ''}: see it with moat diff ${result.task}`,
            );
          else if (result.sync?.warning) out.note(`${finished}; kept, as its work could not be read (below)`);
          else if (result.keptBecause) out.note(`${finished}; kept on ${result.branch}, as ${result.keptBecause}: see it with moat diff ${result.task}`);
          else out.note(`${finished}; kept on ${result.branch}, with no work (moat rm ${result.task} removes it)`);
          cli.setExit(report(cli, result));
        } finally {
          restore();
        }
      },
    );
}

export function registerAgent(program: Command, cli: CliContext): void {
  program
    .command('agent')
    .description("run a template's agent on a prompt, non-interactively, in a task (created if needed)")
    .argument('<prompt>', 'what to ask the agent')
    .option('--task <name>', 'task to run in (created when it does not exist)')
    .option('-t, --template <name>', 'template of a new task (default: your config, moat.yaml, or shell)')
    .addHelpText('after', '\nExamples:\n  OPENAI_API_KEY=… moat agent -t codex "fix the failing test"\n  moat agent --task fix-login "now add a test for it"')
    .action(async (prompt: string, opts: { task?: string; template?: string }) => {
      const { io, restore } = terminalIO(cli, false);
      // Unlike exec, run and shell (the program's own output, for pipes and terminals alike), this
      // is an agent's answer for a person to read: each line marked `agent | `, controls escaped.
      const answer = { stdout: sandboxStream(cli.io.stdout, 'agent | '), stderr: sandboxStream(cli.io.stderr, 'agent | ') };
      const flush = () => endAll([answer.stdout, answer.stderr]);
      try {
        const result = await cli
          .moat(cli.output(false))
          .agent(prompt, { ...io, ...answer }, { task: opts.task, template: opts.template })
          .finally(flush);
        const out = cli.output(false);
        out.note(
          `task ${result.task} on ${result.branch}: agent exited ${result.exitCode}; egress ${result.egress.allowed} allowed, ${result.egress.denied} denied`,
        );
        if (result.upstream) out.note(`agent failed: ${upstreamFailureLine(result.upstream)}`);
        // git's --stat of the agent's work: file names the agent chose (git quotes most; the rest is escaped).
        if (result.diffStat) cli.io.stderr.write(`${terminalLines(result.diffStat)}\n`);
        cli.setExit(report(cli, result));
      } finally {
        restore();
      }
    });

  program
    .command('new')
    .description('choose the template for this repository (writes template: into moat.yaml)')
    .requiredOption('-t, --template <name>', 'template (see moat templates)')
    .option('--json', 'print as JSON')
    .action(async (opts: { template: string; json?: boolean }) => {
      const out = cli.output(opts.json);
      const result = await cli.moat(out).newTemplate(opts.template);
      out.result(result, () => `${result.file}: template ${result.template}`);
    });
}
