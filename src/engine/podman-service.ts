import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MoatError } from '../errors.js';

/** How long a service moat started waits for the next request before it ends by itself. */
export const PODMAN_SERVICE_IDLE_SECONDS = 600;

/** Where Podman's API socket is for this user: root's under /run/podman, a user's under XDG_RUNTIME_DIR. */
export function podmanSocketPath(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 0): string | undefined {
  if (uid === 0) return '/run/podman/podman.sock';
  return env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'podman', 'podman.sock') : undefined;
}

async function isSocket(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isSocket() ?? false;
}

/**
 * Podman has no daemon: its API is served by `podman system service`, which systemd's socket
 * activation starts where it is set up. Where it is not, moat starts one itself (detached, so it
 * serves the next commands too) and says so; it ends after {@link PODMAN_SERVICE_IDLE_SECONDS} without a request.
 * Returns the socket path, or undefined when Podman is not installed.
 */
export async function ensurePodmanService(
  env: NodeJS.ProcessEnv = process.env,
  note: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<string | undefined> {
  const socket = podmanSocketPath(env);
  if (!socket) {
    throw new MoatError('E_ENGINE_UNREACHABLE', 'no place for the Podman API socket: XDG_RUNTIME_DIR is not set', {
      hint: 'log in with a session that sets XDG_RUNTIME_DIR (loginctl enable-linger $USER), or set MOAT_ENGINE_SOCKET',
    });
  }
  if (await isSocket(socket)) return socket;
  const child = spawn('podman', ['system', 'service', `--time=${PODMAN_SERVICE_IDLE_SECONDS}`, `unix://${socket}`], {
    detached: true,
    stdio: 'ignore',
    env,
    // conmon inherits the service's working directory and fails once it is gone (a removed task's folder).
    cwd: '/',
  });
  const started = await new Promise<boolean>((resolve) => {
    child.once('error', () => resolve(false));
    child.once('spawn', () => resolve(true));
  });
  if (!started) return undefined;
  child.unref();
  note(`moat: started the Podman API service (podman system service, ends after ${PODMAN_SERVICE_IDLE_SECONDS}s idle) at ${socket}`);
  for (let waited = 0; waited < 10_000; waited += 100) {
    if (await isSocket(socket)) return socket;
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new MoatError('E_ENGINE_UNREACHABLE', `podman system service did not open ${socket}`, {
    hint: `run it yourself to see why: podman system service --time=${PODMAN_SERVICE_IDLE_SECONDS} unix://${socket}`,
  });
}
