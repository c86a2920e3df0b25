import { realpath, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { MoatError } from '../errors.js';

/** Host places that hold credentials or control the host: never shown to a sandbox, even if asked. */
const NEVER = ['.ssh', '.aws', '.kube', '.docker', '.gnupg', '.config/gcloud', '.azure', '.netrc', '.npmrc', '.pypirc', '.git-credentials', '.password-store'];
const NEVER_ABSOLUTE = ['/', '/etc', '/root', '/home', '/var/run', '/run', '/proc', '/sys', '/dev', '/boot', '/var/lib/docker', '/usr', '/var'];

/**
 * The user's read-only mounts, checked once at creation on their real paths: an existing folder,
 * not a credential store, no engine socket, nothing that contains the whole host.
 */
export async function checkMounts(
  mounts: Array<{ source: string; target: string }>,
  cwd: string,
  home: string = homedir(),
): Promise<Array<{ source: string; target: string }>> {
  const checked: Array<{ source: string; target: string }> = [];
  const targets = new Set<string>();
  for (const mount of mounts) {
    const fail = (why: string) =>
      new MoatError('E_CONFIG_INVALID', `mounts: ${mount.source} -> ${mount.target}: ${why}`, {
        hint: 'mount package caches or data folders only; credentials reach a sandbox as bound secrets',
      });
    // Relative to where the command was given (the warm server runs elsewhere).
    const real = await realpath(resolve(cwd, mount.source)).catch(() => undefined);
    if (!real || !(await stat(real)).isDirectory()) throw fail('not an existing folder');
    if (NEVER_ABSOLUTE.includes(real) || real === home) throw fail('too broad: it would show the host');
    const sensitive = NEVER.map((p) => join(home, p));
    if (sensitive.some((p) => real === p || real.startsWith(`${p}/`) || p.startsWith(`${real}/`))) throw fail('holds credentials');
    if (real.includes('docker.sock') || real.startsWith('/var/run') || real.startsWith('/run/')) throw fail('engine and system sockets are never mounted');
    if (targets.has(mount.target)) throw fail('two mounts at the same place');
    targets.add(mount.target);
    checked.push({ source: real, target: mount.target });
  }
  return checked;
}
