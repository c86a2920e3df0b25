import type { Command } from 'commander';
import { ExitCode } from '../../errors.js';
import { terminalJson, terminalText } from '../../domain/terminal-text.js';
import { formatSize } from '../../domain/size.js';
import { templateContents, TOOLCHAIN_INFO, TOOLCHAINS } from '../../domain/toolchain.js';
import type { CliContext } from '../main.js';
import { endAll, formatAge, sandboxStream, table } from '../output.js';

export function registerInspect(program: Command, cli: CliContext): void {
  program
    .command('ls')
    .description('list tasks with their state, branch, image, age and limits')
    .option('-a, --all', 'tasks of every repository, and the spare ones warm servers made ahead')
    .option('--json', 'print as JSON')
    .action(async (opts: { all?: boolean; json?: boolean }) => {
      const out = cli.output(opts.json);
      const tasks = await cli.moat(out).ls({ all: opts.all });
      out.result(tasks, () =>
        tasks.length === 0
          ? 'no tasks (create one with: moat up)'
          : table([
              ['TASK', 'STATE', 'BRANCH', 'COMMITS', 'AGE', 'EGRESS ok/denied', 'LIMITS', 'IMAGE', ...(tasks.some((t) => t.node) ? ['NODE'] : [])],
              ...tasks.map((t) => [
                t.name,
                // A pod on a node that is not Ready may be reported running by a kubelet no longer heard from.
                `${t.spare ? 'spare (made ahead)' : t.stopReason ? `${t.state}: ${t.stopReason.split(';')[0]}` : t.state}${t.node?.ready === false ? ' (node not Ready)' : ''}`,
                t.branch,
                String(t.commits),
                formatAge(t.ageSeconds),
                t.network === 'none' ? 'off' : `${t.egress.allowed}/${t.egress.denied}`,
                `${formatSize(t.limits.memoryBytes)}/${t.limits.cpus}cpu/${t.limits.pids}pids/net:${t.network}${t.ports.map((p) => ` port:${p.port}->${p.bind}:${p.hostPort}`).join('')}`,
                // After the engine's column when there is one: /gvisor says what stands between it and the host.
                `${t.image}${t.isolation === 'gvisor' ? ' /gvisor' : ''}`,
                ...(tasks.some((x) => x.node) ? [nodeText(t.node)] : []),
              ]),
            ]),
      );
    });

  program
    .command('logs')
    .description("show what the task's container wrote to its output")
    .argument('<task>')
    .option('-f, --follow', 'keep following')
    .option('-n, --tail <lines>', 'only the last lines', (v) => Number.parseInt(v, 10))
    .option('--raw', 'the output byte for byte, escape sequences and all (by default control characters show escaped)')
    .action(async (task: string, opts: { follow?: boolean; tail?: number; raw?: boolean }) => {
      // What the container wrote is the sandbox's: each line marked `task | ` and escaped, unless the user asks for the bytes.
      const out = opts.raw ? cli.io.stdout : sandboxStream(cli.io.stdout, `${terminalText(task)} | `);
      const err = opts.raw ? cli.io.stderr : sandboxStream(cli.io.stderr, `${terminalText(task)} | `);
      try {
        await cli.moat(cli.output(false)).logs(task, { follow: Boolean(opts.follow), tail: opts.tail }, out, err);
      } finally {
        if (!opts.raw) await endAll([out, err]);
      }
    });

  program
    .command('stats')
    .description('CPU, memory, pids, workspace disk and egress of tasks')
    .argument('[task]')
    .option('-f, --follow', 'refresh every two seconds (JSON: one array per line)')
    .option('--json', 'print as JSON')
    .action(async (task: string | undefined, opts: { json?: boolean; follow?: boolean }) => {
      const out = cli.output(opts.json);
      const moat = cli.moat(out);
      for (;;) {
        const stats = await moat.stats(task);
        if (opts.follow && opts.json) cli.io.stdout.write(`${terminalJson(JSON.stringify(stats))}\n`);
        else {
          if (opts.follow && (cli.io.stdout as { isTTY?: boolean }).isTTY) cli.io.stdout.write('\x1b[H\x1b[2J');
          printStats(stats);
        }
        if (!opts.follow) return;
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
      function printStats(stats: Awaited<ReturnType<typeof moat.stats>>): void {
        out.result(stats, () =>
          stats.length === 0
            ? 'no tasks'
            : table([
                ['TASK', 'CPU', 'MEMORY', 'PIDS', 'WORKSPACE', 'EGRESS up/down (ok/denied)'],
                ...stats.map((s) => [
                  s.task,
                  s.container ? `${s.container.cpuPercent.toFixed(1)}%` : '-',
                  s.container ? `${formatSize(s.container.memoryBytes)} / ${limitText(formatSize(s.limits.memoryBytes), s.limitEnforcement.memory)}` : '-',
                  s.container ? `${s.container.pids} / ${limitText(String(s.limits.pids), s.limitEnforcement.pids)}` : '-',
                  `${s.workspaceBytes === undefined ? '-' : formatSize(s.workspaceBytes)}${s.diskCapBytes ? ` / ${formatSize(s.diskCapBytes)}` : ' (no cap)'}`,
                  `${formatSize(s.egress.bytesUp)}/${formatSize(s.egress.bytesDown)} (${s.egress.allowed}/${s.egress.denied})`,
                ]),
              ]),
        );
      }
    });

  program
    .command('doctor')
    .description('check the engine, kernel features and what moat can enforce here, each with a fix')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const out = cli.output(opts.json);
      const report = await cli.moat(out).doctor();
      out.result(report, () =>
        [
          ...report.checks.map(
            (c) => `${c.status === 'ok' ? 'ok  ' : c.status === 'warn' ? 'warn' : 'FAIL'}  ${c.name}: ${c.detail}${c.fix ? `\n      fix: ${c.fix}` : ''}`,
          ),
          '',
          'enforced here:',
          ...Object.entries(report.enforcement).map(([key, value]) => `  ${key}: ${value}`),
          '',
          'host files a sandbox can make grow, and their caps:',
          ...report.caps.map((c) => `  ${c.name}: ${c.cap}${c.now ? ` (now: ${c.now})` : ''}`),
          ...(report.engines.length > 0 ? ['', 'engine configurations on this machine, and what each enforces:'] : []),
          ...report.engines.flatMap((e) => [
            `  ${e.status === 'ok' ? 'ok    ' : e.status === 'warn' ? 'warn  ' : 'absent'}  ${e.name}: ${e.detail}${e.fix ? `\n      fix: ${e.fix}` : ''}`,
            ...Object.entries(e.enforces).map(([key, value]) => `      ${key}: ${value}`),
          ]),
        ].join('\n'),
      );
      if (!report.ok) cli.setExit(ExitCode.failure);
    });

  program
    .command('templates')
    .description('list the templates a task can be built from, with the toolchains each carries')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const out = cli.output(opts.json);
      const templates = (await cli.moat(out).templates()).map((t) => ({ ...t, contains: templateContents(t) }));
      out.result(templates, () =>
        [
          table([
            ['TEMPLATE', 'TOOLCHAINS', 'NETWORK IT ASKS FOR', 'FROM', 'DESCRIPTION'],
            ...templates.map((t) => [t.name, t.contains.summary, t.egress?.join(', ') ?? 'none', t.source, t.description]),
          ]),
          '',
          'toolchains:',
          ...TOOLCHAINS.map(
            (name) => `  ${name} ${TOOLCHAIN_INFO[name].version}: ${TOOLCHAIN_INFO[name].from}; picked for ${TOOLCHAIN_INFO[name].markers.join(', ')}`,
          ),
          'Without -t or a template in your config or moat.yaml, `moat up` picks the toolchains whose files are at the',
          'repository\'s top level (all of them when several), else shell. "+ detected": added to the template\'s own.',
          'Add toolchains to a template yourself with -t NAME+TOOLCHAIN (e.g. codex+python, node+python).',
        ].join('\n'),
      );
    });
}

/** A limit the engine does not enforce is never shown as one. */
function limitText(limit: string, enforcement: string): string {
  return enforcement === 'enforced' ? limit : `${limit} (NOT enforced)`;
}

/** A task's node for `ls`: its name, and when it is not Ready, the cluster's words. */
function nodeText(node: { name: string; ready?: boolean; why?: string } | undefined): string {
  if (!node) return '-';
  if (node.ready === false) return `${node.name}: NOT Ready (${node.why ?? 'no reason given'}); see moat doctor`;
  return node.ready === undefined ? `${node.name} (Ready not known: the nodes could not be listed)` : node.name;
}
