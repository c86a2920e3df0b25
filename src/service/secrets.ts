import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { EffectiveConfig } from '../config/effective.js';
import { placeholderFor, type BoundSecret, type SecretSource } from '../domain/bound-secret.js';
import type { TaskRecord } from '../domain/task.js';
import { MoatError } from '../errors.js';
import { sendSecrets } from '../gateway/gateway-process.js';
import { SOCKET_NAME, socketDir } from '../gateway/task-egress.js';
import { runProcess } from '../workspace/run-process.js';
import type { MoatContext } from './context.js';
import { expandHome } from '../config/paths.js';

type Source = SecretSource;

/** Reads a secret's real value on the host, from what the user's config names. Never from a repository. */
export async function resolveSecret(name: string, source: Source, env: NodeJS.ProcessEnv): Promise<string> {
  const fail = (why: string, hint: string) => new MoatError('E_CONFIG_INVALID', `secret ${name}: ${why}`, { hint });
  if ('env' in source) {
    const value = env[source.env];
    if (!value) throw fail(`the environment variable ${source.env} is not set`, `export ${source.env}=… before running moat, or change secrets.${name}.from`);
    return value;
  }
  if ('file' in source) {
    const path = expandHome(source.file);
    const value = (await readFile(path, 'utf8').catch(() => undefined))?.trim();
    if (!value) throw fail(`${path} is missing or empty`, `write the value to ${path} (mode 600), or change secrets.${name}.from`);
    return value;
  }
  const [file, ...args] = source.command;
  const result = await runProcess(file!, args, {
    cwd: homedir(),
    env: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined)),
  });
  const value = result.stdout.trim();
  if (result.exitCode !== 0 || !value)
    throw fail(
      `the command ${file} ${result.exitCode === undefined ? 'could not run' : `exited ${result.exitCode} or printed nothing`}`,
      `run it yourself to check, or change secrets.${name}.from`,
    );
  return value;
}

/** The task's bound secrets (placeholders, never values) and the values, read now on the host. */
export async function bindSecrets(config: EffectiveConfig, env: NodeJS.ProcessEnv): Promise<{ bound: BoundSecret[]; values: Record<string, string> }> {
  const bound: BoundSecret[] = [];
  const values: Record<string, string> = {};
  for (const [name, spec] of Object.entries(config.secrets)) {
    values[name] = await resolveSecret(name, spec.from, env);
    bound.push({
      name,
      placeholder: placeholderFor(name, randomBytes(6).toString('hex')),
      hosts: spec.hosts.map((h) => h.toLowerCase()),
      header: spec.header,
      format: spec.format ?? (spec.header.toLowerCase() === 'authorization' ? 'Bearer {value}' : '{value}'),
      methods: spec.methods,
      pathPrefixes: spec.pathPrefixes,
      route: spec.route,
      ...(spec.intercept ? { intercept: true } : {}),
      from: spec.from,
    });
  }
  return { bound, values };
}

/**
 * (Re)hands a task's secret values to the gateway: after `up`, and before each exec in case it
 * restarted. Values are read again from the sources recorded at creation (a key a template bound
 * from the environment is in no config file); one that cannot be read now is left as the gateway
 * has it, with a warning.
 */
export async function pushSecrets(ctx: MoatContext, record: TaskRecord, values?: Record<string, string>): Promise<void> {
  if (!record.secrets?.length || record.network === 'none') return;
  let resolved = values;
  if (!resolved) {
    resolved = {};
    for (const secret of record.secrets) {
      if (!secret.from) continue;
      try {
        resolved[secret.name] = await resolveSecret(secret.name, secret.from, ctx.env);
      } catch (error) {
        ctx.progress(`warning: ${(error as Error).message}; the gateway keeps the value it had, if any`);
      }
    }
  }
  for (const value of Object.values(resolved)) ctx.secretValues.add(value);
  await sendSecrets(ctx.store.home, join(socketDir(ctx.store.home, record.repoKey, record.name), SOCKET_NAME), resolved);
}
