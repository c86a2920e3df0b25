import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TaskRecord } from '../domain/task.js';
import { MoatError } from '../errors.js';
import { egressDir } from '../gateway/task-egress.js';
import { runProcess } from '../workspace/run-process.js';
import type { MoatContext } from './context.js';
import { expandHome } from '../config/paths.js';

/** Where the sandbox finds the task's agent (the egress folder is mounted read-only at /moat/egress). */
export const SANDBOX_SSH_DIR = '/moat/ssh';
export const SANDBOX_SSH_AUTH_SOCK = `${SANDBOX_SSH_DIR}/agent.sock`;

/** An ssh config for the sandbox: connections go through the gateway, which judges each one. */
export const SANDBOX_SSH_CONFIG = `# Written by moat: ssh reaches hosts only through the gateway (allow them as host:22).
Host *
  ProxyCommand socat - PROXY:127.0.0.1:%h:%p,proxyport=3128
  StrictHostKeyChecking accept-new
  UserKnownHostsFile ~/.ssh/known_hosts
`;

const PATH_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin' };

/**
 * A dedicated ssh-agent for one task, holding only the keys the user chose. The private keys stay
 * on the host; the sandbox gets the agent's socket, so it can use the keys while it runs but never
 * copy them.
 */
export async function startTaskAgent(ctx: MoatContext, record: TaskRecord): Promise<void> {
  if (!record.sshKeys?.length) return;
  await stopTaskAgent(ctx, record);
  // ssh-agent serves only its own uid (and root): it runs as the sandbox's uid, in a folder of its
  // own under /tmp (the moat home may not be traversable by that uid); keys are loaded by this
  // process, which may read them. The folder alone is mounted into the sandbox.
  const dir = await mkdtemp(join(tmpdir(), 'moat-ssh-'));
  const asSandbox = ctx.hostUser.uid === 0 && record.user.uid !== 0;
  if (asSandbox) await chown(dir, record.user.uid, record.user.gid);
  record.sshAgentDir = dir;
  await ctx.store.save(record);
  const socket = join(dir, 'agent.sock');
  const started = await runProcess('ssh-agent', ['-s', '-a', socket], {
    cwd: '/',
    env: PATH_ENV,
    ...(asSandbox ? { uid: record.user.uid, gid: record.user.gid } : {}),
  });
  const pid = /SSH_AGENT_PID=(\d+)/.exec(started.stdout)?.[1];
  if (started.exitCode !== 0 || !pid)
    throw new MoatError('E_ENGINE_FAILED', `could not start an ssh-agent for the task: ${started.stderr.trim() || started.error?.message || 'no pid'}`, {
      hint: 'install openssh-client on the host',
    });
  await writeFile(join(egressDir(ctx.store.taskDir(record.repoKey, record.name)), 'ssh-agent.pid'), pid, { mode: 0o600 });
  for (const key of record.sshKeys) {
    const added = await runProcess('ssh-add', ['-q', expandHome(key)], {
      cwd: '/',
      env: { ...PATH_ENV, SSH_AUTH_SOCK: socket, SSH_ASKPASS: '/bin/false', SSH_ASKPASS_REQUIRE: 'never', DISPLAY: '' },
    });
    if (added.exitCode !== 0) {
      await stopTaskAgent(ctx, record);
      throw new MoatError('E_CONFIG_INVALID', `could not load ssh key ${key}: ${added.stderr.trim().split('\n')[0] ?? ''}`, {
        hint: 'moat loads keys without a passphrase prompt; use a key without one for the task, or a deploy key',
      });
    }
  }
}

export async function stopTaskAgent(ctx: MoatContext, record: TaskRecord): Promise<void> {
  const pidFile = join(egressDir(ctx.store.taskDir(record.repoKey, record.name)), 'ssh-agent.pid');
  const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
  if (pid > 0) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await rm(pidFile, { force: true });
  if (record.sshAgentDir?.startsWith(join(tmpdir(), 'moat-ssh-'))) await rm(record.sshAgentDir, { recursive: true, force: true });
}
