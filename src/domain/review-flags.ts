/**
 * Changes a host tool might execute or follow after a merge: the reviewer must see them. Pure:
 * works on paths, modes and blob facts the caller read from git objects (never from the agent's tree).
 */
export type ReviewFlag =
  | 'symlink'
  | 'symlink-outside'
  | 'executable'
  | 'submodule'
  | 'hook-or-automation'
  | 'editor-config'
  | 'ci-workflow'
  | 'build-script'
  | 'package-scripts'
  | 'git-attributes'
  | 'binary'
  | 'large';

export interface ChangedFile {
  path: string;
  status: string;
  oldMode: string;
  newMode: string;
}

const PATH_RULES: Array<{ test: RegExp; flag: ReviewFlag }> = [
  { test: /(^|\/)\.envrc$|(^|\/)\.direnv\//, flag: 'hook-or-automation' },
  { test: /(^|\/)\.(husky|githooks|git-hooks)\/|(^|\/)\.pre-commit-config\.ya?ml$|(^|\/)lefthook\.ya?ml$/, flag: 'hook-or-automation' },
  { test: /(^|\/)\.(vscode|idea|zed|fleet)\/|(^|\/)\.devcontainer\//, flag: 'editor-config' },
  { test: /^\.github\/workflows\/|^\.gitlab-ci\.ya?ml$|^\.circleci\/|^Jenkinsfile$|^azure-pipelines\.ya?ml$/, flag: 'ci-workflow' },
  { test: /(^|\/)(GNUmakefile|[Mm]akefile|[^/]+\.mk|Justfile|justfile|Taskfile\.ya?ml|Rakefile|build\.rs|setup\.py|conftest\.py)$/, flag: 'build-script' },
  { test: /(^|\/)\.(npmrc|yarnrc|yarnrc\.yml|pnpmfile\.cjs)$|(^|\/)\.cargo\/config(\.toml)?$/, flag: 'build-script' },
  { test: /(^|\/)\.git(attributes|modules)$/, flag: 'git-attributes' },
];

export const LARGE_FILE_BYTES = 5 * 1024 * 1024;

export function pathFlags(file: ChangedFile): ReviewFlag[] {
  const flags = new Set<ReviewFlag>();
  if (file.status !== 'D') {
    for (const rule of PATH_RULES) if (rule.test.test(file.path)) flags.add(rule.flag);
    if (file.newMode === '120000') flags.add('symlink');
    if (file.newMode === '160000') flags.add('submodule');
    if (file.newMode === '100755' && file.oldMode !== '100755') flags.add('executable');
  }
  return [...flags];
}

/** A link whose text leaves the repository: absolute, or climbing above the root with `..`. */
export function linkLeavesRepo(linkPath: string, target: string): boolean {
  if (target.startsWith('/') || target.startsWith('~')) return true;
  let depth = linkPath.split('/').length - 1;
  for (const part of target.split('/')) {
    if (part === '..') depth -= 1;
    else if (part !== '.' && part !== '') depth += 1;
    if (depth < 0) return true;
  }
  return false;
}

/** Did the npm scripts (which `npm install`/`npm test` run on the host) change? */
export function packageScriptsChanged(oldText: string | undefined, newText: string): boolean {
  const scripts = (text: string | undefined): string => {
    if (text === undefined) return '{}';
    try {
      const parsed = JSON.parse(text) as { scripts?: unknown };
      return JSON.stringify(parsed.scripts ?? {});
    } catch {
      return `unparseable:${text}`;
    }
  };
  return scripts(oldText) !== scripts(newText);
}

export function looksBinary(head: Buffer): boolean {
  return head.subarray(0, 8000).includes(0);
}

export const FLAG_TEXT: Record<ReviewFlag, string> = {
  symlink: 'symbolic link',
  'symlink-outside': 'symbolic link pointing outside the repository',
  executable: 'new executable',
  submodule: 'submodule (gitlink)',
  'hook-or-automation': 'runs automatically (hook, direnv, pre-commit)',
  'editor-config': 'editor or devcontainer settings (may run tasks)',
  'ci-workflow': 'CI workflow',
  'build-script': 'build script or package-manager config',
  'package-scripts': 'package.json scripts changed',
  'git-attributes': '.gitattributes/.gitmodules (filters, submodules)',
  binary: 'binary file',
  large: `large file (over ${LARGE_FILE_BYTES / 1024 / 1024} MiB)`,
};
