import type { Command } from 'commander';
import type { ExecIO } from '../../engine/engine.js';
import type { ExecResult } from '../../service/exec.js';
import type { CliContext } from '../main.js';
import { assertNetworkMode } from '../../service/egress.js';
import { terminalLines } from '../../domain/terminal-text.js';
import { endAll, sandboxStream } from '../output.js';

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
        if (count > 1) cli.io.abort(130);
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
    .description('run a command in a task\'s sandbox; its exit status is moat\'s')
    .argument('<task>')
    .argument('<command...>', 'command and arguments, after --')
    .option('-t, --tty', 'allocate a terminal')
    .option('-w, --workdir <dir>', 'working directory inside (default /workspace)')
    .option('--no-sync', 'do not bring commits home afterwards')
    .addHelpText('after', '\nExamples:\n  moat exec fix-login -- npm test\n  echo data | moat exec fix-login -- wc -c')
    .action(async (task: string, command: string[], opts: { tty?: boolean; workdir?: string; sync: boolean }) => {
      const { io, restore } = terminalIO(cli, Boolean(opts.tty));
      try {
        const result = await cli.moat(cli.output(false)).exec(task, stripDashes(command), io, { tty: opts.tty, workdir: opts.workdir, sync: opts.sync });
        cli.setExit(report(cli, result));
      } finally {
        restore();
      }
    });

  program
    .command('shell')
    .description('the task\'s interactive program with a TTY: the agent\'s own UI for agent templates, a shell otherwise')
    .argument('<task>')
    .option('--bash', 'a plain shell even in an agent template')
    .addHelpText('after', '\nExamples:\n  moat shell fix-login\n  moat up -t codex --task cx && moat shell cx   # Codex\'s own TUI, sandboxed')
    .action(async (task: string, opts: { bash?: boolean }) => {
      const { io, restore } = terminalIO(cli, true);
      try {
        const moat = cli.moat(cli.output(false));
        const command = opts.bash ? ['bash', '-l'] : await moat.interactiveCommand(task);
        const result = await moat.exec(task, command, io, { tty: cli.io.stdinIsTTY });
        cli.setExit(report(cli, result));
      } finally {
        restore();
      }
    });

  program
    .command('run')
    .description('up + exec + down in one step; the branch and its commits stay')
    .argument('<command...>', 'command and arguments, after --')
    .option('--task <name>', 'task name (default: generated)')
    .option('-t, --template <name>', 'template')
    .option('--base <ref>', 'branch, tag or commit to start from (default: HEAD)')
    .option('--tty', 'allocate a terminal')
    .option('--rm', 'remove the task afterwards if it left no commits and no uncommitted work')
    .option('--network <mode>', 'none (default), allowlist or open')
    .option('-e, --env <name>', 'pass a variable of yours by name, or NAME=value (repeatable)', (value: string, all: string[]) => [...all, value], [] as string[])
    .option('--allow <host>', 'allow a host (repeatable; implies --network allowlist)', (value: string, all: string[]) => [...all, value], [] as string[])
    .addHelpText('after', '\nExamples:\n  moat run -- make test\n  moat run --task try-fix -- sh -c "./fix.sh && git commit -am fix"')
    .action(async (command: string[], opts: { task?: string; template?: string; base?: string; tty?: boolean; rm?: boolean; network?: string; allow: string[]; env: string[] }) => {
      const network = assertNetworkMode(opts.network) ?? (opts.allow.length > 0 ? 'allowlist' : undefined);
      const { io, restore } = terminalIO(cli, Boolean(opts.tty));
      try {
        const result = await cli.moat(cli.output(false)).run(stripDashes(command), io, { task: opts.task, template: opts.template, base: opts.base, tty: opts.tty, rm: opts.rm, network, allow: opts.allow, env: opts.env });
        if (result.removed) cli.output(false).note(`task ${result.task} finished (exit ${result.exitCode}) and was removed: it left no work`);
        else cli.output(false).note(`task ${result.task} finished (exit ${result.exitCode}); ${result.sync?.commits ?? 0} commit(s) on ${result.branch}`);
        cli.setExit(report(cli, result));
      } finally {
        restore();
      }
    });
}

export function registerAgent(program: Command, cli: CliContext): void {
  program
    .command('agent')
    .description('run a template\'s agent on a prompt, non-interactively, in a task (created if needed)')
    .argument('<prompt>', 'what to ask the agent')
    .option('--task <name>', 'task to run in (created when it does not exist)')
    .option('-t, --template <name>', 'template of a new task (default: moat.yaml, your config, or shell)')
    .addHelpText('after', '\nExamples:\n  OPENAI_API_KEY=… moat agent -t codex "fix the failing test"\n  moat agent --task fix-login "now add a test for it"')
    .action(async (prompt: string, opts: { task?: string; template?: string }) => {
      const { io, restore } = terminalIO(cli, false);
      // Unlike exec, run and shell (the program's own output, for pipes and terminals alike), this
      // is an agent's answer for a person to read: each line marked `agent | `, controls escaped.
      const answer = { stdout: sandboxStream(cli.io.stdout, 'agent | '), stderr: sandboxStream(cli.io.stderr, 'agent | ') };
      const flush = () => endAll([answer.stdout, answer.stderr]);
      try {
        const result = await cli.moat(cli.output(false)).agent(prompt, { ...io, ...answer }, { task: opts.task, template: opts.template }).finally(flush);
        const out = cli.output(false);
        out.note(`task ${result.task} on ${result.branch}: agent exited ${result.exitCode}; egress ${result.egress.allowed} allowed, ${result.egress.denied} denied`);
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
