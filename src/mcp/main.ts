/**
 * The `moat mcp` server process (started by src/mcp/load.ts): serves the repository named by its
 * argument on this process's stdin and stdout, and leaves when the client has gone and the work
 * of its calls has come home.
 */
import { reportError } from '../cli/output.js';
import { serveMcp } from './server.js';
import { restoreClientEnvironment } from './server-memory.js';
import { startProgramsFromHelper } from '../workspace/spawner.js';

// glibc has read its tunables (server-memory.ts); what this server runs gets the client's environment.
restoreClientEnvironment();

// The server's programs (git above all) start from a helper forked now, while this heap is small,
// so the server never forks again (spawner.ts says what a fork costs its next big read).
startProgramsFromHelper();

const cwd = process.argv[2] ?? process.cwd();
// A closed pipe is the client leaving, not an error of ours.
process.stdout.on('error', () => undefined);
try {
  await serveMcp({ cwd, stdin: process.stdin, stdout: process.stdout, log: (line) => process.stderr.write(`${line}\n`) });
  // Keep-alive connections to the engine would hold the process open after the client left.
  process.exit(0);
} catch (error) {
  process.exit(reportError(error, false, new Set(), process.stderr, process.stderr));
}
