import type { Command } from 'commander';
import { formatSize } from '../../domain/size.js';
import { isMoatError } from '../../errors.js';
import type { CliContext } from '../main.js';
import { confirm } from '../prompt.js';
import { assertNetworkMode } from '../../service/egress.js';
import { terminalText } from '../../domain/terminal-text.js';
import { cancelOnSignal } from '../cancel.js';
import { parseIsolation } from '../../domain/isolation.js';

export function registerLifecycle(program: Command, cli: CliContext): void {
  program
    .command('up')
    .description('create a task: branch moat/<task>, its own workspace repository, and a hardened container')
    .option('--task <name>', 'task name (default: generated)')
    .option(
      '-t, --template <name>',
      "template to build the sandbox from (default: your config, moat.yaml, else detected from the repository's files, else shell; add toolchains: codex+python)",
    )
    .option('--base <ref>', 'branch, tag or commit to start from (default: HEAD)')
    .option('--network <mode>', "none (default), allowlist or open; a network goes through moat's gateway")
    .option('--allow <host>', 'allow a host (repeatable; implies --network allowlist)', (value: string, all: string[]) => [...all, value], [] as string[])
    .option(
      '--ask',
      'hold a connection to a host neither allowed nor denied until you answer (moat egress --pending, moat allow TASK HOST --once, moat ui); implies --network allowlist',
    )
    .option(
      '--ssh-key <path>',
      "a private key for the task's own ssh-agent (repeatable; needs a network)",
      (value: string, all: string[]) => [...all, value],
      [] as string[],
    )
    .option('--devcontainer', "build the environment from the repository's committed .devcontainer/devcontainer.json")
    .option('--isolation <kind>', "runc (default) or gvisor: gVisor's user-space kernel between the agent and the host (default: MOAT_ISOLATION, your config)")
    .option(
      '-e, --env <name>',
      'pass a variable of yours by name, or NAME=value (repeatable)',
      (value: string, all: string[]) => [...all, value],
      [] as string[],
    )
    .option('--json', 'print the task record as JSON')
    .addHelpText(
      'after',
      '\nCtrl-C (or a TERM) cancels: what the up had made (container, workspace, branch, record, gateway\nregistration) is removed and moat exits 130 (143 for TERM); a second Ctrl-C leaves at once (moat gc cleans up).\n\nExamples:\n  moat up --task fix-login\n  moat up --base release-1.2 -t shell --json\n  moat up --task deps --allow registry.npmjs.org',
    )
    .action(
      async (opts: {
        task?: string;
        template?: string;
        base?: string;
        network?: string;
        allow: string[];
        ask?: boolean;
        env: string[];
        devcontainer?: boolean;
        sshKey: string[];
        isolation?: string;
        json?: boolean;
      }) => {
        const out = cli.output(opts.json);
        const network = assertNetworkMode(opts.network) ?? (opts.allow.length > 0 || opts.ask ? 'allowlist' : undefined);
        // Ctrl-C cancels: what the up had made is removed, and moat exits 130. One that comes after
        // the task was made changes nothing (it must not kill moat with the task made and unreported).
        const { signal } = cancelOnSignal(cli);
        const record = await cli.moat(out).up({
          task: opts.task,
          template: opts.template,
          base: opts.base,
          network,
          allow: opts.allow,
          ask: opts.ask,
          env: opts.env,
          devcontainer: opts.devcontainer,
          sshKeys: opts.sshKey,
          isolation: parseIsolation(opts.isolation, '--isolation'),
          signal,
        });
        out.result(record, () =>
          [
            `task ${record.name} is up`,
            `  branch  ${record.branch} (from ${terminalText(record.baseRef)} ${record.baseCommit.slice(0, 10)})`,
            // The image may be named by the repository's devcontainer.json, the hosts by its moat.yaml.
            `  image   ${terminalText(record.image)}${record.isolation === 'gvisor' ? ' (under gVisor)' : ''}`,
            `  limits  memory ${formatSize(record.limits.memoryBytes)}, cpus ${record.limits.cpus}, pids ${record.limits.pids}, network ${record.network}` +
              (record.network !== 'none' ? ` (allow: ${record.egress?.allow.map(terminalText).join(', ') || 'nothing yet'})` : ''),
            `next: moat exec ${record.name} -- <command>   or   moat shell ${record.name}`,
          ].join('\n'),
        );
      },
    );

  program
    .command('down')
    .description("bring the task's commits home and remove its container (workspace and branch stay)")
    .argument('<task>')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExample:\n  moat down fix-login')
    .action(async (task: string, opts: { json?: boolean }) => {
      const out = cli.output(opts.json);
      const result = await cli.moat(out).down(task);
      if (result.sync?.warning) out.note(result.sync.warning);
      out.result(result, () => `task ${task} is down; ${result.sync?.commits ?? 0} commit(s) on ${result.sync?.branch ?? `moat/${task}`}`);
    });

  program
    .command('reset')
    .description("replace the task's container with a fresh one over the same workspace")
    .argument('<task>')
    .option('--json', 'print the task record as JSON')
    .addHelpText('after', '\nExample:\n  moat reset fix-login   # the sandbox is wedged or was tampered with')
    .action(async (task: string, opts: { json?: boolean }) => {
      const out = cli.output(opts.json);
      const record = await cli.moat(out).reset(task);
      out.result(record, () => `task ${task} has a fresh container`);
    });

  program
    .command('rm')
    .description('discard a task: container, workspace and branch (asks if it has unmerged commits)')
    .argument('<task>')
    .option('-f, --force', 'discard unmerged commits without asking, and without bringing the latest work home first')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      "\nWithout --force, the task's latest work is brought home first; if that fails, nothing is removed\n(exit 5, with the cause). --force discards anyway.\n\nExamples:\n  moat rm fix-login\n  moat rm --force experiment-1",
    )
    .action(async (task: string, opts: { force?: boolean; json?: boolean }) => {
      const out = cli.output(opts.json);
      const moat = cli.moat(out);
      let result;
      try {
        result = await moat.rm(task, { force: opts.force });
      } catch (error) {
        if (!isMoatError(error) || error.code !== 'E_CONFIRM' || opts.json) throw error;
        if (!(await confirm(out, `${error.message}. Discard them?`))) throw error;
        result = await moat.rm(task, { force: true });
      }
      out.result(result, () => `task ${task} removed${result.unmergedCommits ? ` (${result.unmergedCommits} unmerged commit(s) discarded)` : ''}`);
    });

  program
    .command('gc')
    .description('remove what a crash left behind: containers, networks and volumes of tasks that are gone, half-made tasks')
    .option('-a, --all', 'also the spare tasks warm servers made ahead (moat ls -a shows them)')
    .option('--json', 'print what was removed as JSON')
    .action(async (opts: { all?: boolean; json?: boolean }) => {
      const out = cli.output(opts.json);
      const result = await cli.moat(out).gc({ all: opts.all });
      const total = result.removedContainers.length + result.removedVolumes.length + result.removedTasks.length + result.removedSpares.length;
      out.result(result, () =>
        total === 0
          ? 'nothing to collect'
          : [
              ...result.removedTasks.map((t) => `removed half-made task ${t}`),
              ...result.removedSpares.map((t) => `removed spare task ${t}`),
              ...result.removedContainers.map((c) => `removed container ${c}`),
              ...result.removedVolumes.map((v) => `removed volume ${v}`),
            ].join('\n'),
      );
    });
}
