import type { ContainerEngine } from './engine.js';
import { findEngine } from './find-engine.js';
import { MoatError } from '../errors.js';
import { ensurePodmanService } from './podman-service.js';
import { loadConfigFile } from '../config/load.js';
import { resolvePaths } from '../config/paths.js';

export type EngineKind = 'docker' | 'podman';

/**
 * The one place moat opens its engine; every command comes through here. Which engine: `--engine`
 * (the CLI puts it in MOAT_ENGINE), else MOAT_ENGINE, else `engine` in the user's config, else
 * whichever answers (Docker first). MOAT_ENGINE_SOCKET or DOCKER_HOST say where it is.
 * Podman's API service is started when Podman is chosen (or is the only engine) and its socket is absent.
 */
export async function openEngine(env: NodeJS.ProcessEnv = process.env): Promise<ContainerEngine> {
  const named = env.MOAT_ENGINE || undefined;
  if (named !== undefined && named !== 'docker' && named !== 'podman') {
    throw new MoatError('E_USAGE', `unknown engine "${named}" (MOAT_ENGINE or --engine)`, { hint: 'use docker or podman' });
  }
  const kind: EngineKind | undefined = named ?? (await loadConfigFile(resolvePaths(env).userConfig)).engine;
  const explicitSocket = Boolean(env.MOAT_ENGINE_SOCKET || env.DOCKER_HOST);
  const chosen = { ...env, ...(kind ? { MOAT_ENGINE: kind } : {}) };
  if (kind === 'podman' && !explicitSocket) await ensurePodmanService(env);
  let endpoint;
  try {
    endpoint = await findEngine(chosen);
  } catch (error) {
    // Neither engine answers and none was named: Podman's service may simply not be started.
    if (kind || explicitSocket || (error as MoatError).code !== 'E_ENGINE_UNREACHABLE') throw error;
    if (!(await ensurePodmanService(env).catch(() => undefined))) throw error;
    endpoint = await findEngine({ ...env, MOAT_ENGINE: 'podman' });
  }
  if (endpoint.kind === 'podman') return new (await import('./podman-engine.js')).PodmanEngine(endpoint);
  return new (await import('./docker-engine.js')).DockerEngine(endpoint);
}
