import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { serverEnvironment } from './server-memory.js';

/**
 * `moat mcp` runs the server in a child process of its own (dist/mcp/main.js) that inherits the
 * client's stdin and stdout: the SDK stays out of the CLI bundle every other command loads, and
 * the bundle, compiled from V8's code cache, cannot import an ES module. The path holds from here
 * (dist/mcp/) and from the bundle (dist/cli/) alike. A TERM or an INT for moat goes to the
 * server, which stops its commands and brings their work home before it leaves.
 */
export function runMcpServer(cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const main = fileURLToPath(new URL('../../dist/mcp/main.js', import.meta.url));
  const child = spawn(process.execPath, [main, cwd], { stdio: 'inherit', env: serverEnvironment(env) });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      resolve(code ?? (signal === 'SIGTERM' ? 143 : signal === 'SIGINT' ? 130 : 1));
    });
  });
}
