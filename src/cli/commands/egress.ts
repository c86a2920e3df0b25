import type { Command } from 'commander';
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
    program
      .command(verb)
      .description(verb === 'allow' ? 'let a running task reach more hosts (no restart)' : 'stop a running task from reaching hosts (no restart; deny wins)')
      .argument('<task>')
      .argument('<hosts...>', 'host names, *.domain wildcards, host:port, IPs or CIDR blocks')
      .option('--json', 'print the new policy as JSON')
      .addHelpText('after', `\nExample:\n  moat ${verb} fix-login registry.npmjs.org`)
      .action(async (task: string, hosts: string[], opts: { json?: boolean }) => {
        const out = cli.output(opts.json);
        const result = await cli.moat(out).changeEgress(task, verb === 'allow' ? { allow: hosts } : { deny: hosts });
        if (result.needsReset) out.note(`task ${task} had no network; run \`moat reset ${task}\` to give its container the gateway`);
        const shown = (list: string[]) => list.map(terminalText).join(', ') || '(none)';
        out.result(result, () => `task ${task}: network ${result.mode}; allow ${shown(result.allow)}; deny ${shown(result.deny)}`);
      });
  }

  program
    .command('approve')
    .description('approve the hosts this repository\'s moat.yaml asks for (stored in your user config)')
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
    .description('every outbound attempt of a task, allowed or denied')
    .argument('<task>')
    .option('-f, --follow', 'keep printing new attempts')
    .option('--json', 'one JSON object per line')
    .action(async (task: string, opts: { follow?: boolean; json?: boolean }) => {
      const moat = cli.moat(cli.output(opts.json));
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
