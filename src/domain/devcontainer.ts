/**
 * devcontainer.json, read as data (pure). The file is the repository's, so it is
 * attacker-controlled: moat takes the environment from it (image or Dockerfile, containerEnv,
 * postCreateCommand) and refuses everything that would weaken the sandbox or run on the host.
 */
export interface DevcontainerPlan {
  image?: string;
  build?: { dockerfile: string; context: string; args: Record<string, string> };
  containerEnv: Record<string, string>;
  postCreateCommand?: string[];
  /** What was ignored, said to the user. */
  notes: string[];
}

export type DevcontainerResult = { plan: DevcontainerPlan } | { refused: string[] };

/** JSON with comments and trailing commas, as devcontainer.json allows. */
export function parseJsonc(text: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i]!;
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i += 1;
      out += '\n';
    } else if (c === '/' && text[i + 1] === '*') {
      i += 2;
      while (i < text.length && !(text[i] === '*' && text[i + 1] === '/')) i += 1;
      i += 1;
    } else out += c;
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, '$1'));
}

const REFUSED = [
  'privileged',
  'capAdd',
  'runArgs',
  'mounts',
  'securityOpt',
  'init',
  'appPort',
  'workspaceMount',
  'overrideCommand',
  'hostRequirements',
  'runServices',
  'dockerComposeFile',
];
const IGNORED = [
  'forwardPorts',
  'portsAttributes',
  'remoteUser',
  'containerUser',
  'updateRemoteUserUID',
  'customizations',
  'name',
  'shutdownAction',
  'workspaceFolder',
  'remoteEnv',
  'otherPortsAttributes',
  'waitFor',
  'userEnvProbe',
];

function command(value: unknown): string[] | undefined {
  if (typeof value === 'string') return ['sh', '-c', value];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string') && value.length > 0) return value as string[];
  return undefined;
}

/** `dir` is the folder of the devcontainer.json inside the repository, e.g. ".devcontainer". */
export function planDevcontainer(json: unknown, dir: string): DevcontainerResult {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { refused: ['devcontainer.json is not a JSON object'] };
  const config = json as Record<string, unknown>;
  const refused: string[] = [];
  const notes: string[] = [];
  for (const key of REFUSED)
    if (key in config && config[key] !== false) refused.push(`"${key}" would weaken moat's hardening (or touch the host); moat refuses it`);
  if (config.features && Object.keys(config.features as object).length > 0)
    refused.push('"features" are fetched from a registry: unsupported offline; put what they install into the Dockerfile');
  if ('initializeCommand' in config) notes.push("initializeCommand ignored: moat never runs a repository's command on the host");
  for (const key of IGNORED) if (key in config) notes.push(`${key} ignored`);
  for (const key of ['onCreateCommand', 'updateContentCommand', 'postStartCommand', 'postAttachCommand'])
    if (key in config) notes.push(`${key} ignored (moat runs postCreateCommand only)`);

  const containerEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries((config.containerEnv as Record<string, unknown>) ?? {})) {
    if (typeof value !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) refused.push(`containerEnv.${key} is not a NAME: "string" pair`);
    // ${localEnv:X} would copy the host's environment into the sandbox: that is the user's grant to give.
    else if (/\$\{localEnv:/.test(value))
      refused.push(`containerEnv.${key} reads the host's environment (\${localEnv:…}); grant variables with --env or envPassthrough instead`);
    else containerEnv[key] = value;
  }
  let build: DevcontainerPlan['build'];
  const b = config.build as Record<string, unknown> | undefined;
  if (b && typeof b === 'object') {
    if (typeof b.dockerfile !== 'string') refused.push('build.dockerfile is missing');
    const args: Record<string, string> = {};
    for (const [key, value] of Object.entries((b.args as Record<string, unknown>) ?? {})) {
      if (typeof value === 'string' && !/\$\{localEnv:/.test(value)) args[key] = value;
      else refused.push(`build.args.${key} is not a plain string`);
    }
    const context = normalize(`${dir}/${typeof b.context === 'string' ? b.context : '.'}`);
    const dockerfile = normalize(`${dir}/${String(b.dockerfile)}`);
    if (context === undefined || dockerfile === undefined) refused.push('build.context and build.dockerfile must stay inside the repository');
    else build = { context, dockerfile, args };
  } else if (typeof config.dockerFile === 'string') {
    const dockerfile = normalize(`${dir}/${config.dockerFile}`);
    if (dockerfile === undefined) refused.push('dockerFile must stay inside the repository');
    else build = { context: normalize(`${dir}/${typeof config.context === 'string' ? config.context : '.'}`) ?? dir, dockerfile, args: {} };
  }
  const image = typeof config.image === 'string' ? config.image : undefined;
  if (!image && !build) refused.push('devcontainer.json names neither an image nor a build');
  if (refused.length > 0) return { refused };
  return { plan: { image: build ? undefined : image, build, containerEnv, postCreateCommand: command(config.postCreateCommand), notes } };
}

/** A repository-relative path without `..` escaping the root; "" for the root itself. */
export function normalize(path: string): string | undefined {
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) return undefined;
      parts.pop();
    } else parts.push(part);
  }
  return parts.join('/');
}
