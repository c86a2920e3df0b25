import type { Command } from 'commander';
import { MoatError } from '../../errors.js';
import type { CliContext } from '../main.js';

function portNumber(value: string, what: string): number {
  if (!/^\d{1,5}$/.test(value))
    throw new MoatError('E_USAGE', `${what} ${JSON.stringify(value.slice(0, 40))} is not a TCP port`, { hint: 'give a number from 1 to 65535' });
  return Number(value);
}

export function registerPort(program: Command, cli: CliContext): void {
  program
    .command('port')
    .description("make a port of the sandbox's loopback reachable on the host (inbound only; works without a network)")
    .argument('<task>')
    .argument('<port>', 'the port a server listens on inside the sandbox, at 127.0.0.1')
    .option('--host-port <n>', 'the host port (default: the same number if free, else any free one)')
    .option('--bind <address>', 'the host address to listen on (default 127.0.0.1; 0.0.0.0 opens it to your network)')
    .option('--close', 'close this port instead')
    .option('--json', 'print as JSON')
    .addHelpText(
      'after',
      '\nExample:\n  moat port fix-login 3000        # then open http://127.0.0.1:3000\n  moat port fix-login 3000 --close\n\nmoat ls shows open ports; down and rm close them.',
    )
    .action(async (task: string, port: string, opts: { hostPort?: string; bind?: string; close?: boolean; json?: boolean }) => {
      const out = cli.output(opts.json);
      const moat = cli.moat(out);
      if (opts.close) {
        const closed = await moat.closePort(task, portNumber(port, 'port'));
        return out.result({ task, port: Number(port), closed }, () =>
          closed ? `closed port ${port} of task ${task}` : `port ${port} of task ${task} was not open`,
        );
      }
      const open = await moat.openPort(task, portNumber(port, 'port'), {
        ...(opts.hostPort !== undefined ? { hostPort: portNumber(opts.hostPort, '--host-port') } : {}),
        ...(opts.bind !== undefined ? { bind: opts.bind } : {}),
      });
      const shown = open.bind.includes(':') ? `[${open.bind}]` : open.bind;
      out.result(
        open,
        () =>
          `task ${task}: sandbox 127.0.0.1:${open.port} -> ${shown}:${open.hostPort}${open.bind === '127.0.0.1' || open.bind === '::1' ? '' : ' (reachable from other machines)'}`,
      );
    });
}
