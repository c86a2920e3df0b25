import { homedir } from 'node:os';
import type { ContainerEngine, EngineKind } from './engine.js';
import { findEngine } from './find-engine.js';
import { MoatError } from '../errors.js';
import { ensurePodmanService } from './podman-service.js';
import { loadConfigFile } from '../config/load.js';
import { expandHome, resolvePaths } from '../config/paths.js';
import type { MoatConfig } from '../config/schema.js';

const KINDS: readonly EngineKind[] = ['docker', 'podman', 'kubernetes'];

/**
 * The one place moat opens its engine; every command comes through here. Which engine: `--engine`
 * (the CLI puts it in MOAT_ENGINE), else MOAT_ENGINE, else `engine` in the user's config, else
 * whichever answers (Docker first). MOAT_ENGINE_SOCKET or DOCKER_HOST say where it is.
 * Podman's API service is started when Podman is chosen (or is the only engine) and its socket is absent.
 * Kubernetes is only ever chosen by name; `kubernetes:` in the user's config says where.
 */
export async function openEngine(env: NodeJS.ProcessEnv = process.env): Promise<ContainerEngine> {
  const named = env.MOAT_ENGINE || undefined;
  if (named !== undefined && !(KINDS as readonly string[]).includes(named)) {
    throw new MoatError('E_USAGE', `unknown engine "${named}" (MOAT_ENGINE or --engine)`, { hint: 'use docker, podman or kubernetes' });
  }
  const userConfig = await loadConfigFile(resolvePaths(env).userConfig);
  const kind = (named as EngineKind | undefined) ?? userConfig.engine;
  if (kind === 'kubernetes') return openKubernetes(env, userConfig.kubernetes);
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
  if (endpoint.kind === 'podman') {
    const { podmanExecAheadMode } = await import('./podman-exec-ahead.js');
    return new (await import('./podman-engine.js')).PodmanEngine(endpoint, { execAhead: podmanExecAheadMode(env.MOAT_PODMAN_EXEC_AHEAD) });
  }
  return new (await import('./docker-engine.js')).DockerEngine(endpoint);
}

/** The cluster of the user's config; MOAT_K8S_* (tests, one-off runs) override its fields. */
async function openKubernetes(env: NodeJS.ProcessEnv, config: MoatConfig['kubernetes'] = {}): Promise<ContainerEngine> {
  const imageEngineAt = env.MOAT_K8S_IMAGE_ENGINE || config.imageEngine;
  let imageEngine: ContainerEngine | undefined;
  if (imageEngineAt) {
    const endpoint = await findEngine({ PATH: env.PATH, HOME: env.HOME, DOCKER_HOST: imageEngineAt, MOAT_ENGINE: 'docker' });
    imageEngine = new (await import('./docker-engine.js')).DockerEngine(endpoint);
  }
  const { KubernetesEngine } = await import('./kubernetes-engine.js');
  return new KubernetesEngine({
    kubeconfig: config.kubeconfig !== undefined ? expandHome(config.kubeconfig, env.HOME ?? homedir()) : env.KUBECONFIG || undefined,
    context: env.MOAT_K8S_CONTEXT || config.context,
    namespace: env.MOAT_K8S_NAMESPACE || config.namespace || 'default',
    imageEngine,
    gvisorRuntimeClass: config.gvisorRuntimeClass,
    execAhead: execAheadMode(env.MOAT_K8S_EXEC_AHEAD),
    statusInBand: env.MOAT_K8S_STATUS_INBAND !== 'off',
  });
}

/** MOAT_K8S_EXEC_AHEAD: unset `spares` (only a pool's spares get an exec opened ahead), `on` every pod, `off` none. */
export function execAheadMode(value: string | undefined): 'spares' | 'on' | 'off' {
  if (value === undefined || value === '') return 'spares';
  if (value === 'spares' || value === 'on' || value === 'off') return value;
  throw new MoatError('E_CONFIG_INVALID', `MOAT_K8S_EXEC_AHEAD=${value.slice(0, 40)} is none of spares, on, off`, {
    hint: "unset it (an exec opened ahead only into the pool's spares), or set on (every pod) or off (none)",
  });
}
