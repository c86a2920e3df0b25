import { resolve } from 'node:path';
import type { Command } from 'commander';
import { runMcpServer } from '../../mcp/load.js';
import type { CliContext } from '../main.js';
import { MoatError } from '../../errors.js';

export function registerMcp(program: Command, cli: CliContext): void {
  program
    .command('mcp')
    .description("serve this repository's sandboxes to an MCP client (Codex, Claude Code, Claude Desktop, Cursor) over stdio")
    .option('--repo <path>', 'the repository to serve (default: the current directory)')
    .addHelpText(
      'after',
      '\nThe client starts it, e.g.: claude mcp add moat -- moat mcp --repo /path/to/repo\nIts tools create tasks, run commands and edit files in them; it never widens a sandbox, reads a host\npath, merges or pushes. It ends when the client closes its stdin: commands still running are stopped\nand their work comes home first.',
    )
    .action(async (opts: { repo?: string }) => {
      // Never served by the warm server (bin/server-client.js): the client's stdio is this process's.
      if (!cli.io.local)
        throw new MoatError('E_USAGE', 'moat mcp runs in its own process only', { hint: "start it as the MCP client's command: moat mcp --repo PATH" });
      cli.setExit(await runMcpServer(resolve(cli.io.cwd ?? process.cwd(), opts.repo ?? '.')));
    });
}
