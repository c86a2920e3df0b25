import { access, constants, readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { MoatError } from '../errors.js';

/**
 * Where the engine is and how moat reaches it. A unix socket on this host is a local engine (it
 * shares moat's filesystem and kernel: the host-local shortcuts may be offered); tcp:// and ssh://
 * are remote engines, reached only through the engine's API.
 */
export type EngineEndpoint =
  | { kind: 'docker' | 'podman'; transport: 'unix'; socketPath: string; source: string }
  | {
      kind: 'docker' | 'podman';
      transport: 'tcp' | 'ssh';
      url: string;
      host: string;
      port: number;
      username?: string;
      tls?: { ca: Buffer; cert: Buffer; key: Buffer };
      source: string;
    };

/** The endpoint as said to the user. */
export function endpointName(endpoint: EngineEndpoint): string {
  return endpoint.transport === 'unix' ? endpoint.socketPath : endpoint.url;
}

/** Connection options for the Docker API client (dockerode's, same names). */
export function connectionOptions(endpoint: EngineEndpoint): Record<string, unknown> {
  if (endpoint.transport === 'unix') return { socketPath: endpoint.socketPath };
  if (endpoint.transport === 'ssh')
    return { protocol: 'ssh', host: endpoint.host, port: endpoint.port, username: endpoint.username, sshOptions: { agent: process.env.SSH_AUTH_SOCK } };
  return endpoint.tls
    ? { protocol: 'https', host: endpoint.host, port: endpoint.port, ...endpoint.tls }
    : { protocol: 'http', host: endpoint.host, port: endpoint.port };
}

/** DOCKER_HOST=tcp://host:port or ssh://user@host[:port], with TLS when DOCKER_TLS_VERIFY=1 (certificates in DOCKER_CERT_PATH or ~/.docker). */
async function remoteEndpoint(value: string, kind: 'docker' | 'podman', env: NodeJS.ProcessEnv): Promise<EngineEndpoint> {
  const bad = (why: string) =>
    new MoatError('E_ENGINE_UNREACHABLE', `DOCKER_HOST=${value} ${why}`, { hint: 'use unix:///path/to/docker.sock, tcp://host:port or ssh://user@host' });
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw bad('is not an address');
  }
  const transport = url.protocol === 'tcp:' ? 'tcp' : url.protocol === 'ssh:' ? 'ssh' : undefined;
  if (!transport || !url.hostname) throw bad('is not a unix, tcp or ssh address');
  const tlsWanted = transport === 'tcp' && (env.DOCKER_TLS_VERIFY === '1' || url.port === '2376');
  let tls: { ca: Buffer; cert: Buffer; key: Buffer } | undefined;
  if (tlsWanted) {
    const dir = env.DOCKER_CERT_PATH || join(homedir(), '.docker');
    try {
      const [ca, cert, key] = await Promise.all(['ca.pem', 'cert.pem', 'key.pem'].map((file) => readFile(join(dir, file))));
      tls = { ca: ca!, cert: cert!, key: key! };
    } catch {
      throw new MoatError('E_ENGINE_UNREACHABLE', `DOCKER_HOST=${value} asks for TLS, and ${dir} lacks ca.pem, cert.pem or key.pem`, {
        hint: 'set DOCKER_CERT_PATH to the folder with the client certificates',
      });
    }
  }
  const port = url.port ? Number(url.port) : transport === 'ssh' ? 22 : tls ? 2376 : 2375;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    kind,
    transport,
    url: `${transport}://${url.username ? `${url.username}@` : ''}${url.host}`,
    host,
    port,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(tls ? { tls } : {}),
    source: 'DOCKER_HOST',
  };
}

/**
 * Finds the engine's socket with a chain of small strategies; the first that names an existing
 * socket wins. Environment first (MOAT_ENGINE_SOCKET, DOCKER_HOST), then the usual places.
 */
export async function findEngine(env: NodeJS.ProcessEnv = process.env): Promise<EngineEndpoint> {
  const wanted = env.MOAT_ENGINE === 'podman' ? 'podman' : env.MOAT_ENGINE === 'docker' ? 'docker' : undefined;
  const candidates: Array<EngineEndpoint & { transport: 'unix' }> = [];
  if (env.MOAT_ENGINE_SOCKET)
    candidates.push({ kind: wanted ?? 'docker', transport: 'unix', socketPath: env.MOAT_ENGINE_SOCKET, source: 'MOAT_ENGINE_SOCKET' });
  if (env.DOCKER_HOST && candidates.length === 0) {
    if (!env.DOCKER_HOST.startsWith('unix://')) return remoteEndpoint(env.DOCKER_HOST, wanted ?? 'docker', env);
    candidates.push({ kind: wanted ?? 'docker', transport: 'unix', socketPath: env.DOCKER_HOST.slice('unix://'.length), source: 'DOCKER_HOST' });
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
    candidates.push({ kind: 'docker', transport: 'unix', socketPath: '/var/run/docker.sock', source: 'default' });
    if (runtimeDir) candidates.push({ kind: 'docker', transport: 'unix', socketPath: join(runtimeDir, 'docker.sock'), source: 'rootless' });
  }
  if (wanted !== 'docker') {
    if (runtimeDir) candidates.push({ kind: 'podman', transport: 'unix', socketPath: join(runtimeDir, 'podman', 'podman.sock'), source: 'rootless podman' });
    candidates.push({ kind: 'podman', transport: 'unix', socketPath: '/run/podman/podman.sock', source: 'podman' });
  }

  let denied: (EngineEndpoint & { transport: 'unix' }) | undefined;
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
    if (
      await access(join(dir, bin), constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return true;
  }
  return false;
}
