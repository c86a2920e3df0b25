import type { Command } from 'commander';
import { FLAG_TEXT } from '../../domain/review-flags.js';
import { isMoatError } from '../../errors.js';
import type { MergeStrategy } from '../../service/review.js';
import type { CliContext } from '../main.js';
import type { Output } from '../output.js';
import { confirm } from '../prompt.js';
import { terminalText } from '../../domain/terminal-text.js';

export function registerReview(program: Command, cli: CliContext): void {
  program
    .command('sync')
    .description("bring the task's commits (and a snapshot of uncommitted work) home now")
    .argument('<task>')
    .option('--json', 'print as JSON')
    .action(async (task: string, opts: { json?: boolean }) => {
      const out = cli.output(opts.json);
      const result = await cli.moat(out).sync(task);
      if (result.warning) out.note(result.warning);
      out.result(result, () => `${result.branch}: ${result.commits} commit(s), tip ${result.tip.slice(0, 10)}`);
    });

  program
    .command('diff')
    .description("show the task's committed and uncommitted work against its base, with risky changes flagged")
    .argument('<task>')
    .option('--stat', 'a summary per file')
    .option('--name-only', 'only the changed paths')
    .option('--json', 'print as JSON')
    .action(async (task: string, opts: { stat?: boolean; nameOnly?: boolean; json?: boolean }) => {
      const out = cli.output(opts.json);
      const result = await cli.moat(out).diff(task, { patch: !opts.stat && !opts.nameOnly, stat: opts.stat });
      if (!opts.json) {
        if (result.sync.skippedLarge) out.note(`${result.sync.skippedLarge} uncommitted file(s) over 50 MiB are not shown (they stay in the task's workspace)`);
        for (const file of result.flagged) {
          // The link's target in quotes, escaped like the name (one notation on the line: \x1b, not JSON's \u001b).
          const target = file.linkTarget !== undefined ? ` -> "${terminalText(file.linkTarget)}"` : '';
          out.note(`flag: ${terminalText(file.path)}: ${file.flags.map((f) => FLAG_TEXT[f]).join(', ')}${target}`);
        }
      }
      // A name is escaped whole (a newline in it must not start a line of its own); the patch and
      // the stat keep their lines and tabs (the reviewer must see the content as it is) and have
      // every other control escaped by the output (git quotes unusual names in its headers).
      out.result(result, () =>
        opts.nameOnly ? result.files.map((f) => terminalText(f.path)).join('\n') : opts.stat ? (result.stat ?? '') : (result.patch ?? ''),
      );
    });

  const confirmed = async <T>(out: Output, opts: { yes?: boolean; json?: boolean }, attempt: (yes: boolean) => Promise<T>): Promise<T> => {
    try {
      return await attempt(Boolean(opts.yes));
    } catch (error) {
      if (!isMoatError(error) || error.code !== 'E_CONFIRM' || opts.json) throw error;
      // The message names the flagged files: the sandbox chose those names.
      if (!(await confirm(out, `${error.message}. Continue?`))) throw error;
      return attempt(true);
    }
  };

  program
    .command('merge')
    .description("merge the task's commits into your current branch (refuses on a dirty checkout or conflicts)")
    .argument('<task>')
    .option('--squash', 'one commit')
    .option('--rebase', "replay the task's commits on top of your branch")
    .option('-y, --yes', 'merge flagged changes without asking')
    .option('--json', 'print as JSON')
    .action(async (task: string, opts: { squash?: boolean; rebase?: boolean; yes?: boolean; json?: boolean }) => {
      const out = cli.output(opts.json);
      const strategy: MergeStrategy = opts.squash ? 'squash' : opts.rebase ? 'rebase' : 'merge';
      const result = await confirmed(out, opts, (yes) => cli.moat(out).merge(task, { strategy, yes }));
      if (result.uncommittedLeftBehind)
        out.note(`the task has uncommitted work that was not merged (see moat diff ${task}; moat apply ${task} lays it on your checkout)`);
      out.result(result, () =>
        result.commits === 0
          ? `nothing to merge from ${task}`
          : `merged ${result.commits} commit(s) from ${task} into ${terminalText(result.into)} (${result.strategy})`,
      );
    });

  program
    .command('push')
    .description('push the task branch to your remote with your own credentials (the sandbox has none)')
    .argument('<task>')
    .option('--remote <name>', 'remote to push to', 'origin')
    .option('--json', 'print as JSON')
    .action(async (task: string, opts: { remote: string; json?: boolean }) => {
      const out = cli.output(opts.json);
      const result = await cli.moat(out).push(task, { remote: opts.remote });
      out.result(result, () => `pushed ${result.branch} (${result.tip.slice(0, 10)}) to ${result.remote}`);
    });

  program
    .command('apply')
    .description("lay the task's work (committed and uncommitted) on your checkout as unstaged changes")
    .argument('<task>')
    .option('-y, --yes', 'apply flagged changes without asking')
    .option('--json', 'print as JSON')
    .action(async (task: string, opts: { yes?: boolean; json?: boolean }) => {
      const out = cli.output(opts.json);
      const result = await confirmed(out, opts, (yes) => cli.moat(out).apply(task, { yes }));
      out.result(result, () => `applied ${result.files} file(s) from ${task} to your checkout (unstaged)`);
    });
}
