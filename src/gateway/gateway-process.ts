import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MoatError } from '../errors.js';

// The compiled daemon, found the same way from src/ (tests) and dist/ (the CLI).
const DAEMON = fileURLToPath(new URL('../../dist/gateway/daemon.js', import.meta.url));

function ask(controlPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(controlPath);
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('end', () => resolve(answer.trim()));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('gateway did not answer')));
    socket.write(`${command}\n`);
  });
}

/**
 * Makes the home's gateway pick up the current task files, starting it first if it is not
 * running. The gateway runs detached: it outlives this moat command, as the tasks do.
 */
export async function reloadGateway(home: string, env: NodeJS.ProcessEnv): Promise<void> {
  const controlPath = join(home, 'gateway', 'control.sock');
  try {
    const answer = await ask(controlPath, 'reload');
    if (answer.startsWith('ok')) return;
  } catch {
    // Not running: start it below.
  }
  await mkdir(join(home, 'gateway'), { recursive: true, mode: 0o700 });
  const log = openSync(join(home, 'gateway', 'gateway.log'), 'a', 0o600);
  const child = spawn(process.execPath, [DAEMON, home], {
    detached: true,
    stdio: ['ignore', log, log],
    env: {
      PATH: env.PATH ?? '/usr/bin:/bin',
      ...(env.MOAT_GATEWAY_DNS ? { MOAT_GATEWAY_DNS: env.MOAT_GATEWAY_DNS } : {}),
      ...(env.MOAT_GATEWAY_CA ? { MOAT_GATEWAY_CA: env.MOAT_GATEWAY_CA } : {}),
      ...(env.MOAT_AUDIT_MAX_BYTES ? { MOAT_AUDIT_MAX_BYTES: env.MOAT_AUDIT_MAX_BYTES } : {}),
    },
  });
  child.unref();
  for (let i = 0; i < 100; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const answer = await ask(controlPath, 'reload').catch(() => undefined);
    if (answer?.startsWith('ok')) return;
  }
  throw new MoatError('E_ENGINE_FAILED', 'the egress gateway did not start', { hint: `see ${join(home, 'gateway', 'gateway.log')}` });
}

/** Hands a task's secret values to the gateway, in memory; they are never written to disk by moat. */
export async function sendSecrets(home: string, socketPath: string, values: Record<string, string>): Promise<void> {
  const payload = Buffer.from(JSON.stringify(values), 'utf8').toString('base64');
  const answer = await ask(join(home, 'gateway', 'control.sock'), `secrets ${socketPath} ${payload}`);
  if (!answer.startsWith('ok'))
    throw new MoatError('E_ENGINE_FAILED', 'the egress gateway refused the secrets', { hint: `see ${join(home, 'gateway', 'gateway.log')}` });
}
