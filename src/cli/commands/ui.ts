import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { MoatError } from '../../errors.js';
import { startDashboard, isLoopback } from '../../ui/server.js';
import type { CliContext } from '../main.js';

/**
 * The token comes from a file or MOAT_UI_TOKEN, never from argv (which every user of the host can
 * read in ps); the variable is deleted once read, so no child of moat inherits it.
 */
function readToken(file: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const fromEnv = env.MOAT_UI_TOKEN;
  delete env.MOAT_UI_TOKEN;
  if (file) {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (error) {
      throw new MoatError('E_USAGE', `cannot read the token file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
        hint: 'give a readable file holding the token',
      });
    }
  }
  return fromEnv?.trim() || undefined;
}

export function registerUi(program: Command, cli: CliContext): void {
  program
    .command('ui')
    .description('a local web dashboard: every task of your moat home, live egress, pending requests to answer, review and merge')
    .option('--port <port>', 'port to listen on (default: a free one)', (v) => Number.parseInt(v, 10))
    .option('--listen <address>', 'address to listen on (default 127.0.0.1); anything but loopback needs a token you chose')
    .option('--token-file <file>', 'read the access token from this file (or set MOAT_UI_TOKEN); default: a random one')
    .option('--json', 'print the address as JSON (the token URL only to a terminal)')
    .addHelpText('after', '\nThe URL printed carries a one-time token; the page keeps it in a cookie. Stop with Ctrl-C.')
    .action(async (opts: { port?: number; listen?: string; tokenFile?: string; json?: boolean }) => {
      const out = cli.output(opts.json);
      if (opts.port !== undefined && (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535))
        throw new MoatError('E_USAGE', '--port must be a number from 0 to 65535', { hint: 'or leave it out for a free port' });
      const token = readToken(opts.tokenFile, process.env);
      const moat = cli.moat(out);
      const listen = opts.listen ?? '127.0.0.1';
      const dashboard = await startDashboard(moat.context, { listen, port: opts.port, token, env: moat.context.env });
      if (!isLoopback(listen)) out.note(`warning: listening on ${listen}: anyone who reaches it and has the token can merge tasks and allow hosts`);
      // The token URL goes to a terminal only: a --json consumer (a log, a pipe) gets the address.
      const terminal = (cli.io.stdout as { isTTY?: boolean }).isTTY === true;
      out.result(
        { url: dashboard.url, ...(terminal || !opts.json ? { loginUrl: dashboard.loginUrl } : {}) },
        () => `moat ui: open ${dashboard.loginUrl}\n(Ctrl-C stops it)`,
      );
      await new Promise<void>((resolve) => {
        const off = cli.io.onSignal(() => {
          off();
          resolve();
        });
      });
      await dashboard.close();
    });
}
