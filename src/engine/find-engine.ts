import { access, constants, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MoatError } from '../errors.js';

export interface EngineEndpoint {
  kind: 'docker' | 'podman';
  socketPath: string;
  source: string;
}

/**
 * Finds the engine's socket with a chain of small strategies; the first that names an existing
 * socket wins. Environment first (MOAT_ENGINE_SOCKET, DOCKER_HOST), then the usual places.
 */
export async function findEngine(env: NodeJS.ProcessEnv = process.env): Promise<EngineEndpoint> {
  const wanted = env.MOAT_ENGINE === 'podman' ? 'podman' : env.MOAT_ENGINE === 'docker' ? 'docker' : undefined;
  const candidates: EngineEndpoint[] = [];
  if (env.MOAT_ENGINE_SOCKET) candidates.push({ kind: wanted ?? 'docker', socketPath: env.MOAT_ENGINE_SOCKET, source: 'MOAT_ENGINE_SOCKET' });
  if (env.DOCKER_HOST) {
    if (!env.DOCKER_HOST.startsWith('unix://')) {
      throw new MoatError('E_ENGINE_UNREACHABLE', `DOCKER_HOST=${env.DOCKER_HOST} is not a unix socket`, {
        hint: 'moat talks to a local engine over its unix socket; unset DOCKER_HOST or point it at unix:///var/run/docker.sock',
      });
    }
    candidates.push({ kind: wanted ?? 'docker', socketPath: env.DOCKER_HOST.slice('unix://'.length), source: 'DOCKER_HOST' });
  }
  // An engine the user named explicitly is the only one we may talk to: falling back to another
  // socket would run their tasks somewhere they did not choose.
  if (candidates.length > 0) {
    const chosen = candidates[0]!;
    const info = await stat(chosen.socketPath).catch(() => undefined);
    if (!info?.isSocket()) {
      throw new MoatError('E_ENGINE_UNREACHABLE', `no engine socket at ${chosen.socketPath} (from ${chosen.source})`, {
        hint: `start the engine, or fix/unset ${chosen.source}`,
      });
    }
    try {
      await access(chosen.socketPath, constants.R_OK | constants.W_OK);
    } catch {
      throw new MoatError('E_ENGINE_PERMISSION', `permission denied on the engine socket ${chosen.socketPath}`, {
        hint: 'add yourself to the docker group (sudo usermod -aG docker $USER, then log in again) or use rootless Docker/Podman',
      });
    }
    return chosen;
  }
  const runtimeDir = env.XDG_RUNTIME_DIR;
  if (wanted !== 'podman') {
    candidates.push({ kind: 'docker', socketPath: '/var/run/docker.sock', source: 'default' });
    if (runtimeDir) candidates.push({ kind: 'docker', socketPath: join(runtimeDir, 'docker.sock'), source: 'rootless' });
  }
  if (wanted !== 'docker') {
    if (runtimeDir) candidates.push({ kind: 'podman', socketPath: join(runtimeDir, 'podman', 'podman.sock'), source: 'rootless podman' });
    candidates.push({ kind: 'podman', socketPath: '/run/podman/podman.sock', source: 'podman' });
  }

  let denied: EngineEndpoint | undefined;
  for (const candidate of candidates) {
    const info = await stat(candidate.socketPath).catch(() => undefined);
    if (!info?.isSocket()) continue;
    try {
      await access(candidate.socketPath, constants.R_OK | constants.W_OK);
      return candidate;
    } catch {
      denied ??= candidate;
    }
  }
  if (denied) {
    throw new MoatError('E_ENGINE_PERMISSION', `permission denied on the engine socket ${denied.socketPath}`, {
      hint: 'add yourself to the docker group (sudo usermod -aG docker $USER, then log in again) or use rootless Docker/Podman',
    });
  }
  const installed = (await Promise.all(['dockerd', 'docker', 'podman'].map((bin) => onPath(bin, env)))).some(Boolean);
  if (!installed) {
    throw new MoatError('E_ENGINE_MISSING', 'no container engine is installed (neither Docker nor Podman found)', {
      hint: 'install Docker from your distribution: apt-get install docker.io (then start it), or install Podman',
    });
  }
  throw new MoatError('E_ENGINE_UNREACHABLE', 'the container engine is not running (no Docker or Podman socket found)', {
    hint: 'install and start Docker: apt-get install docker.io && systemctl start docker (or run dockerd); `moat doctor` checks the setup',
    details: { tried: candidates.map((c) => c.socketPath) },
  });
}

async function onPath(bin: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  for (const dir of (env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (!dir) continue;
    if (await access(join(dir, bin), constants.X_OK).then(() => true, () => false)) return true;
  }
  return false;
}
