/**
 * Language toolchains the built-in templates carry, how a repository's files point at them, and
 * how a template reference names a template plus toolchains (`codex+python`, `node+python`).
 * Pure: the caller reads the repository's file names from git and the templates from disk.
 */

/** In the order they are layered: equal sets give equal build arguments, so cached layers are shared. */
export const TOOLCHAINS = ['node', 'python', 'go', 'rust'] as const;
export type Toolchain = (typeof TOOLCHAINS)[number];

export interface ToolchainInfo {
  /** What `moat templates` shows; test/integration/toolchains.test.ts checks it against the image. */
  version: string;
  from: string;
  /** Files at the repository's top level that mean a project needs this toolchain. */
  markers: readonly string[];
}

export const TOOLCHAIN_INFO: Record<Toolchain, ToolchainInfo> = {
  node: { version: '22.23.3', from: 'Node.js and npm 10.9.4 from the npm registry (sha512-checked)', markers: ['package.json'] },
  python: {
    version: '3.11',
    from: 'Debian bookworm: python3, venv, pip, pytest',
    markers: ['pyproject.toml', 'requirements.txt', 'setup.py', 'setup.cfg', 'Pipfile'],
  },
  go: { version: '1.23', from: 'Debian bookworm-backports: golang-go', markers: ['go.mod'] },
  rust: { version: '1.85', from: 'Debian bookworm: rustc-web, cargo-web', markers: ['Cargo.toml'] },
};

export function isToolchain(name: string): name is Toolchain {
  return (TOOLCHAINS as readonly string[]).includes(name);
}

/** A set of toolchains in the layering order, without repeats. */
export function orderToolchains(set: Iterable<Toolchain>): Toolchain[] {
  const wanted = new Set(set);
  return TOOLCHAINS.filter((t) => wanted.has(t));
}

export interface Detection {
  toolchains: Toolchain[];
  /** The marker files that were found, for telling the user why. */
  markers: string[];
}

/**
 * The toolchains a repository needs, from the names of the files at its top level (at the task's
 * base commit). The repository is attacker-controlled, but this only picks which of moat's own
 * toolchains to install: it grants nothing.
 */
export function detectToolchains(topLevelFiles: readonly string[]): Detection {
  const present = new Set(topLevelFiles);
  const markers: string[] = [];
  const found: Toolchain[] = [];
  for (const toolchain of TOOLCHAINS) {
    const hits = TOOLCHAIN_INFO[toolchain].markers.filter((m) => present.has(m));
    if (hits.length > 0) found.push(toolchain);
    markers.push(...hits);
  }
  return { toolchains: found, markers };
}

/** `codex+python+go`: a template and the toolchains added to it. */
export interface TemplateRef {
  name: string;
  extra: Toolchain[];
}

/** Parses a template reference; undefined when a part after `+` is no toolchain. */
export function parseTemplateRef(ref: string): TemplateRef | undefined {
  const [name, ...rest] = ref.split('+');
  if (!name || !rest.every(isToolchain)) return undefined;
  return { name, extra: orderToolchains(rest as Toolchain[]) };
}

export function formatTemplateRef(ref: TemplateRef): string {
  return [ref.name, ...ref.extra].join('+');
}

/** Where the template of a task came from, in precedence order. */
export type TemplateSource = 'flag' | 'user' | 'repo' | 'detected' | 'default';

export interface TemplateChoice {
  /** A template reference: a template name, maybe with `+toolchain` parts. */
  template: string;
  source: TemplateSource;
  /** The toolchains the image carries. */
  toolchains: Toolchain[];
  /** Marker files behind detected toolchains. */
  markers: string[];
}

/** What the choice needs to know about a template: its own toolchains, and whether it takes detected ones. */
export interface TemplateToolchains {
  /** Undefined: the template's image is its own (a Dockerfile of yours); it takes no toolchains. */
  toolchains?: readonly Toolchain[];
  /** Agent templates: the repository's detected toolchains are added to the template's own. */
  detect?: boolean;
}

/** The template named by the `-t` flag, else your config, else the repository's moat.yaml. */
export function statedTemplate(input: { flag?: string; user?: string; repo?: string }): { ref: string; source: 'flag' | 'user' | 'repo' } | undefined {
  if (input.flag !== undefined) return { ref: input.flag, source: 'flag' };
  if (input.user !== undefined) return { ref: input.user, source: 'user' };
  if (input.repo !== undefined) return { ref: input.repo, source: 'repo' };
  return undefined;
}

/**
 * The template a task is made from: the stated one (flag > your config > moat.yaml), else the
 * toolchains detected in the repository (`python`, `node+python`), else `shell`. A stated
 * template that detects (the agents) gets the detected toolchains added, unless the reference
 * already names toolchains (`codex+go` is a stated choice). `spec` describes the stated
 * template (its name before any `+`).
 */
export function chooseTemplate(
  stated: { ref: string; source: 'flag' | 'user' | 'repo' } | undefined,
  detection: Detection,
  spec: TemplateToolchains = {},
): TemplateChoice {
  const { toolchains: detected, markers } = detection;
  if (!stated) {
    if (detected.length === 0) return { template: 'shell', source: 'default', toolchains: [], markers: [] };
    return { template: detected.join('+'), source: 'detected', toolchains: detected, markers };
  }
  const ref = parseTemplateRef(stated.ref);
  // An unknown reference is left for the template lookup to report with the names there are.
  if (!ref) return { template: stated.ref, source: stated.source, toolchains: [], markers: [] };
  const own = orderToolchains([...(spec.toolchains ?? []), ...ref.extra]);
  if (!spec.detect || ref.extra.length > 0 || spec.toolchains === undefined)
    return { template: stated.ref, source: stated.source, toolchains: own, markers: [] };
  const added = detected.filter((t) => !own.includes(t));
  const template = formatTemplateRef({ name: ref.name, extra: orderToolchains(added) });
  const behind = markers.filter((m) => added.some((t) => TOOLCHAIN_INFO[t].markers.includes(m)));
  return { template, source: stated.source, toolchains: orderToolchains([...own, ...added]), markers: behind };
}

/** One line for `moat up`'s stderr: which template, and why. */
export function describeChoice(choice: TemplateChoice): string {
  const why: Record<TemplateSource, string> = {
    flag: 'from -t',
    user: 'from your config',
    repo: "from the repository's moat.yaml",
    detected: `detected from ${choice.markers.join(', ')}`,
    default: 'the default: no template chosen and no package.json, pyproject.toml, requirements.txt, go.mod or Cargo.toml found',
  };
  const layered = choice.source !== 'detected' && choice.markers.length > 0 ? `; toolchains added for ${choice.markers.join(', ')}` : '';
  const carries = choice.toolchains.length > 0 ? ` (${choice.toolchains.map((t) => `${t} ${TOOLCHAIN_INFO[t].version}`).join(', ')})` : '';
  return `template ${choice.template}${carries}: ${why[choice.source]}${layered}`;
}

/** What a template's image carries, for `moat templates`: each toolchain with its version and origin. */
export function templateContents(spec: TemplateToolchains): {
  toolchains: Array<{ name: Toolchain } & Omit<ToolchainInfo, 'markers'>>;
  detect: boolean;
  summary: string;
} {
  const toolchains = (spec.toolchains ?? []).map((name) => ({ name, version: TOOLCHAIN_INFO[name].version, from: TOOLCHAIN_INFO[name].from }));
  const listed = toolchains.map((t) => `${t.name} ${t.version}`).join(', ');
  const summary = spec.toolchains === undefined ? 'its own image' : `${listed || 'none'}${spec.detect ? ' + detected' : ''}`;
  return { toolchains, detect: spec.detect === true, summary };
}
