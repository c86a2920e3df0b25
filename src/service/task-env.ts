import type { EffectiveConfig } from '../config/effective.js';

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
