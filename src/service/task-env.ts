import type { EffectiveConfig, EgressNetwork } from '../config/effective.js';
import type { NetworkMode } from '../domain/egress-policy.js';
import type { RequestRuleSpec } from '../domain/request-rules.js';
import type { TemplateSpec } from '../image/template.js';
import { needsSandboxTrust, SANDBOX_CA_ENV } from './egress.js';
import { SANDBOX_SSH_AUTH_SOCK, SANDBOX_SSH_CONFIG } from './ssh-agent.js';

/**
 * The sandbox's environment is exactly what the user's config grants: values given in `env`,
 * and host variables named in `envPassthrough`. Nothing else of the host's environment enters.
 */
export function taskEnv(config: EffectiveConfig, hostEnv: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = { ...config.env };
  for (const name of config.envPassthrough) {
    const value = hostEnv[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Names that look like secrets: passing them through hands them to the agent (and to anything it runs). */
export function secretLookingNames(names: string[]): string[] {
  return names.filter((name) => /KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH/i.test(name));
}

/**
 * What a task's grants add to its sandbox's environment, the same at `up` and at `reset`: each
 * bound secret's placeholder under its name (never the value), the CA variables where the gateway
 * shows the sandbox a certificate it must trust, and the ssh-agent's socket where keys are bound.
 */
export function addGrants(
  env: Record<string, string>,
  task: {
    network: NetworkMode;
    egressNetwork: EgressNetwork;
    secrets?: ReadonlyArray<{ name: string; placeholder: string; intercept?: boolean }>;
    rules?: RequestRuleSpec[];
    sshKeys?: readonly string[];
  },
): void {
  for (const secret of task.secrets ?? []) env[secret.name] = secret.placeholder;
  if (task.network !== 'none' && needsSandboxTrust(task.egressNetwork, [...(task.secrets ?? [])], task.rules)) Object.assign(env, SANDBOX_CA_ENV);
  if (task.sshKeys?.length) env.SSH_AUTH_SOCK = SANDBOX_SSH_AUTH_SOCK;
}

/** The template's home files, with the ssh config that points at the task's agent where keys are bound. */
export function homeOf(spec: TemplateSpec, sshKeys: readonly string[] | undefined): TemplateSpec {
  return sshKeys?.length ? { ...spec, home: { ...(spec.home ?? {}), '.ssh/config': SANDBOX_SSH_CONFIG } } : spec;
}
