/** Containers, git, editors, environments, hook managers, CI and moat of the review rule table (review-rules.ts says how paths match). */
import type { ReviewRule } from './review-rules.js';

export const TOOL_RULES = [
  // Docker
  {
    id: 'docker',
    ecosystem: 'Docker',
    paths: [
      'Dockerfile',
      'Dockerfile.*',
      '*.dockerfile',
      'Containerfile',
      '{docker-,}compose*.{yml,yaml}',
      'docker-bake.{hcl,json}',
      '.dockerignore',
      'Earthfile',
    ],
    reason:
      'docker build runs its steps with the build secrets and context given (.dockerignore decides which host files go in); compose starts ' +
      'containers with the mounts, privileges and ports it lists',
  },
  // Dev containers
  {
    id: 'devcontainer',
    ecosystem: 'Dev containers',
    paths: ['.devcontainer/**', '.devcontainer.json'],
    reason: 'VS Code and the devcontainer CLI run initializeCommand on the host and build and start the container it describes',
  },
  // git
  {
    id: 'git-attributes',
    ecosystem: 'git',
    paths: ['.gitattributes'],
    reason: 'git picks filter, diff and merge drivers, line endings and encodings for files from it',
  },
  {
    id: 'git-modules',
    ecosystem: 'git',
    paths: ['.gitmodules'],
    reason: 'git submodule update fetches the URLs it names into the checkout',
  },
  {
    id: 'git-lfs',
    ecosystem: 'git',
    paths: ['.lfsconfig'],
    reason: 'git-lfs sends your credentials to the LFS server it names and downloads files from it',
  },
  {
    id: 'git-config',
    ecosystem: 'git',
    paths: ['.gitconfig', 'gitconfig'],
    reason: "a tracked git config is often included by the user's config (include.path): aliases, hooksPath, fsmonitor run commands",
  },
  // Editors
  {
    id: 'editor',
    ecosystem: 'Editors',
    paths: [
      '.vscode/**',
      '*.code-workspace',
      '.idea/**',
      '.zed/**',
      '.fleet/**',
      '.helix/**',
      '.nvim.lua',
      '.nvimrc',
      '.exrc',
      '.dir-locals.el',
      '.dir-locals-2.el',
      '*.sublime-project',
    ],
    reason: 'editors run the tasks, language servers, interpreters and terminal settings these name, some on opening the folder',
  },
  // Environment
  {
    id: 'environment',
    ecosystem: 'Environment',
    paths: [
      '.envrc',
      '.env',
      '.env.*',
      '.direnv/**',
      'mise.toml',
      '.mise.toml',
      '.mise/**',
      'devbox.json',
      'flake.nix',
      'shell.nix',
      'default.nix',
      'devenv.nix',
      'devenv.yaml',
    ],
    reason: 'direnv, mise, nix and devbox run these on entering the folder; dotenv loaders put .env into the environment (NODE_OPTIONS, PATH)',
  },
  // Task runners
  {
    id: 'task-runner',
    ecosystem: 'Task runners',
    paths: ['justfile', '.justfile', 'Taskfile.{yml,yaml}', 'Taskfile.dist.{yml,yaml}', 'magefile.go', 'magefiles/**', 'Makefile.toml'],
    reason: 'just, task, mage and cargo-make run the commands these define',
  },
  // Git hooks
  {
    id: 'git-hooks',
    ecosystem: 'Git hooks',
    paths: [
      '.pre-commit-config.{yml,yaml}',
      '.husky/**',
      '{.,}lefthook{,-local}.{yml,yaml,json,toml}',
      '.lefthook/**',
      '.githooks/**',
      '.git-hooks/**',
      '.simple-git-hooks.{json,js,cjs}',
      'simple-git-hooks.{json,js,cjs}',
      '.overcommit.yml',
    ],
    reason: 'hook managers run these at commit, checkout and push once installed (npm install often installs them)',
  },
  // CI
  {
    id: 'ci',
    ecosystem: 'CI',
    paths: [
      '.github/workflows/**',
      '.github/actions/**',
      'action.{yml,yaml}',
      '.gitlab-ci.yml',
      '*.gitlab-ci.yml',
      '.gitlab/ci/**',
      '.circleci/**',
      'Jenkinsfile',
      'Jenkinsfile.*',
      '*.jenkinsfile',
      'azure-pipelines.{yml,yaml}',
      '.azure-pipelines/**',
      '.buildkite/**',
      '.travis.yml',
      'bitbucket-pipelines.yml',
      '.drone.yml',
      '.woodpecker.yml',
      '.woodpecker/**',
      '{.,}appveyor.yml',
      '.cirrus.yml',
      '.gitea/workflows/**',
      '.forgejo/workflows/**',
      'cloudbuild.{yml,yaml}',
      '.semaphore/**',
    ],
    reason: "CI runs these with the repository's secrets after a push",
  },
  // moat
  {
    id: 'moat',
    ecosystem: 'moat',
    paths: ['moat.yaml', 'moat.yml', 'moat.json', '.moat/**'],
    reason: "moat takes this repository's settings and host requests from moat.yaml and builds approved templates from .moat/templates",
  },
] as const satisfies readonly ReviewRule[];
