import { Option, type Command } from 'commander';
import { MoatError } from '../../errors.js';
import type { PendingAnswer, PendingAnswered } from '../../service/pending.js';
import type { AuditRecord } from '../../gateway/audit.js';
import { terminalJson, terminalText } from '../../domain/terminal-text.js';
import type { CliContext } from '../main.js';

/** One attempt on one line; the sandbox chose the host, the SNI and the method (and so part of the rule text): all escaped. */
function line(record: AuditRecord): string {
  const target = `${record.method} ${record.host}:${record.port}${record.path ?? ''}${record.sni && record.sni !== record.host ? ` sni=${record.sni}` : ''}`;
  const address = record.address ? ` -> ${record.address}` : '';
  const traffic = `up ${record.bytesUp}B down ${record.bytesDown}B ${record.durationMs}ms`;
  return terminalText(`${record.time}  ${record.decision === 'allowed' ? 'ALLOW' : 'DENY '}  ${target}${address}  (${record.rule})  ${traffic}`);
}

export function registerEgress(program: Command, cli: CliContext): void {
  for (const verb of ['allow', 'deny'] as const) {
    const command = program.command(verb);
    if (verb === 'allow') command.option('--always', 'answer held requests (egress.ask) and add the hosts to egress.allow of your user config');
    command
      .description(verb === 'allow' ? 'let a running task reach more hosts (no restart)' : 'stop a running task from reaching hosts (no restart; deny wins)')
      .argument('<task>')
      .argument('<hosts...>', 'host names, *.domain wildcards, host:port, IPs or CIDR blocks')
      .option('--json', 'print the new policy as JSON')
      .addOption(
        verb === 'allow'
          ? new Option('--once', 'answer a held request (egress.ask): let that connection through, change nothing')
          : new Option('--pending', 'answer a held request (egress.ask): refuse that connection, change nothing'),
      )
      .addHelpText(
        'after',
        `\nExample:\n  moat ${verb} fix-login registry.npmjs.org${verb === 'allow' ? '\n  moat allow fix-login registry.npmjs.org --once    (a request held by egress.ask)' : ''}\nA connection held for an answer (egress.ask) is released by this command: allow (for the task), --once, --always, or deny.`,
      )
      .action(async (task: string, hosts: string[], opts: { json?: boolean; once?: boolean; always?: boolean; pending?: boolean }) => {
        const out = cli.output(opts.json);
        const moat = cli.moat(out);
        if (opts.once || opts.always || opts.pending) {
          if (opts.once && opts.always) throw new MoatError('E_USAGE', '--once and --always exclude each other', { hint: 'choose one answer' });
          const answer: PendingAnswer = opts.once ? 'once' : opts.always ? 'always' : 'deny';
          const results: PendingAnswered[] = [];
          for (const host of hosts) results.push(await moat.answer(task, host, answer));
          out.result(results, () =>
            results
              .map(
                (r) =>
                  `task ${task}: ${r.answered.length} request(s) for ${r.answered.map((q) => terminalText(`${q.host}:${q.port}`)).join(', ')} answered ${r.answer}${r.configFile ? ` (added to ${terminalText(r.configFile)})` : ''}`,
              )
              .join('\n'),
          );
          return;
        }
        const result = await moat.changeEgress(task, verb === 'allow' ? { allow: hosts } : { deny: hosts });
        // A connection held for one of these hosts is released by the same decision.
        for (const host of hosts) await moat.answer(task, host, verb === 'allow' ? 'task' : 'deny').catch(() => undefined);
        if (result.needsReset) out.note(`task ${task} had no network; run \`moat reset ${task}\` to give its container the gateway`);
        const shown = (list: string[]) => list.map(terminalText).join(', ') || '(none)';
        out.result(result, () => `task ${task}: network ${result.mode}; allow ${shown(result.allow)}; deny ${shown(result.deny)}`);
      });
  }

  program
    .command('approve')
    .description("approve the hosts this repository's moat.yaml asks for (stored in your user config)")
    .option('--json', 'print as JSON')
    .addHelpText('after', '\nA repository may request hosts (egress.allow in moat.yaml); they count only after you approve them here.')
    .action(async (opts: { json?: boolean }) => {
      const out = cli.output(opts.json);
      const result = await cli.moat(out).approve();
      out.result(result, () =>
        result.approved.length === 0 && result.templates.length === 0
          ? 'this repository requests no hosts and carries no templates'
          : [
              `approved for ${terminalText(result.repo)} (in ${terminalText(result.file)}):`,
              // The hosts come from the repository's moat.yaml, the template names from its .moat/templates.
              ...(result.approved.length ? [`  hosts: ${result.approved.map(terminalText).join(', ')}`] : []),
              ...(result.templates.length ? [`  templates: ${result.templates.map((t) => terminalText(t.replace(/@(.{12}).*/, ' ($1)'))).join(', ')}`] : []),
            ].join('\n'),
      );
    });

  program
    .command('egress')
    .description('every outbound attempt of a task, allowed or denied; --pending: the requests held for your answer')
    .argument('[task]')
    .option('-f, --follow', 'keep printing new attempts')
    .option('--pending', 'the connections waiting for an answer (egress.ask), of every task of your moat home unless TASK is given')
    .option('--json', 'one JSON object per line')
    .action(async (task: string | undefined, opts: { follow?: boolean; json?: boolean; pending?: boolean }) => {
      const moat = cli.moat(cli.output(opts.json));
      if (opts.pending) {
        const scope = task ? { repoKey: (await moat.context.repo()).key, task } : {};
        const requests = await moat.pending(scope);
        if (opts.json) {
          for (const r of requests) cli.io.stdout.write(`${terminalJson(JSON.stringify(r))}\n`);
        } else if (requests.length === 0) cli.io.stdout.write('no requests wait for an answer\n');
        else {
          // Host and method come from the sandbox: escaped.
          for (const r of requests)
            cli.io.stdout.write(
              r.standing
                ? `${terminalText(`${r.time}  ${r.task}  ${r.method} ${r.host}:${r.port}  asked by the agent (moat mcp), waits until ${r.expiresAt}${r.reason ? `  reason: ${r.reason}` : ''}  (moat allow ${r.task} ${r.host} | --always | moat deny ${r.task} ${r.host} --pending)`)}\n`
                : `${terminalText(`${r.time}  ${r.task}  ${r.method} ${r.host}:${r.port}  waits until ${r.expiresAt}  (moat allow ${r.task} ${r.host} --once | moat allow ... | --always | moat deny ${r.task} ${r.host} --pending)`)}\n`,
            );
        }
        return;
      }
      if (!task) throw new MoatError('E_USAGE', 'moat egress needs a task (or --pending)', { hint: 'moat egress TASK, or moat egress --pending' });
      const print = (records: AuditRecord[]) => {
        for (const record of records) cli.io.stdout.write(`${opts.json ? terminalJson(JSON.stringify(record)) : line(record)}\n`);
      };
      // The log is rotated at its cap (gateway/audit.ts): follow it across that, like tail -F.
      let { records, cursor } = await moat.egressSince(task);
      print(records);
      if (!opts.follow) return;
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        ({ records, cursor } = await moat.egressSince(task, cursor));
        print(records);
      }
    });
}
