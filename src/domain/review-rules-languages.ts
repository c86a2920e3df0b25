/** Languages, their build tools and package managers of the review rule table (review-rules.ts says how paths match). */
import type { ReviewRule } from './review-rules.js';

export const LANGUAGE_RULES = [
  // Python
  {
    id: 'python-setup',
    ecosystem: 'Python',
    paths: ['setup.py', 'setup.cfg'],
    reason: 'pip, build and setuptools run setup.py (setup.cfg configures it) to build or install',
  },
  {
    id: 'python-pyproject',
    ecosystem: 'Python',
    paths: ['pyproject.toml'],
    content: 'pyproject',
    reason: 'pip, build and uv run the build backend it names (backend-path: from the repository); tools load the hooks and plugins it configures',
    when:
      'anything but [project] metadata (name, version, description, readme, license, authors, keywords, classifiers, urls) and ' +
      '[tool.ruff/black/isort/pyright/codespell] changed',
  },
  {
    id: 'python-in-tree-backend',
    ecosystem: 'Python',
    files: 'files under a `backend-path` folder of a `pyproject.toml` (PEP 517 in-tree backend)',
    paths: [],
    reason: 'pip and build import this in-tree PEP 517 backend and run its hooks to build or install',
    when: 'a module there (.py, .pyc, .pyd, .so) changed',
  },
  {
    id: 'python-build-hooks',
    ecosystem: 'Python',
    paths: ['hatch_build.py', 'hatch.toml', 'pdm_build.py', 'conanfile.py'],
    reason: 'hatch, pdm and conan run these build hooks while building',
  },
  {
    id: 'python-tox-nox',
    ecosystem: 'Python',
    paths: ['tox.ini', 'noxfile.py'],
    reason: 'tox and nox run the commands they list',
  },
  {
    id: 'python-pytest',
    ecosystem: 'Python',
    paths: ['conftest.py', 'pytest.ini', '.pytest.ini', 'pytest.toml', '.pytest.toml'],
    reason: 'pytest imports every conftest.py and the plugins its config names (-p)',
  },
  {
    id: 'python-startup',
    ecosystem: 'Python',
    paths: ['sitecustomize.py', 'usercustomize.py', '*.pth', '.pdbrc', 'pyvenv.cfg', '.venv/**'],
    reason: 'Python runs these at start-up when their folder is on its path or is the virtualenv in use; pdb runs .pdbrc of the current folder',
  },
  {
    id: 'python-requirements',
    ecosystem: 'Python',
    paths: ['requirements*.txt', 'requirements/*.txt', 'Pipfile'],
    reason: 'pip install -r runs the build of every package it names (an sdist runs its setup.py) and follows the index URLs it sets',
  },
  // JavaScript
  {
    id: 'js-package-json',
    ecosystem: 'JavaScript',
    paths: ['package.json'],
    content: 'package-json',
    reason:
      'npm, yarn, pnpm and bun run its scripts (install hooks on install), link its bins, install the dependencies it lists (their install ' + 'scripts run)',
    when:
      'anything but descriptive fields (name, version, description, keywords, license, author, files, repository, engines, main, exports, types, ' +
      '…) changed',
  },
  {
    id: 'js-package-yaml',
    ecosystem: 'JavaScript',
    paths: ['package.yaml', 'package.json5'],
    reason: 'pnpm reads these as package.json: scripts, bins, dependencies',
  },
  {
    id: 'js-npm-config',
    ecosystem: 'JavaScript',
    paths: ['.npmrc'],
    reason: 'npm and pnpm take registry, script-shell, node-options and hooks settings from it',
  },
  {
    id: 'js-yarn',
    ecosystem: 'JavaScript',
    paths: ['.yarnrc', '.yarnrc.yml', '.yarn/**', '.pnp.cjs', '.pnp.loader.mjs'],
    reason: "yarn runs the file yarnPath names and the plugins it lists; node loads the Plug'n'Play runtime and the packages of .yarn/cache",
  },
  {
    id: 'js-pnpm',
    ecosystem: 'JavaScript',
    paths: ['.pnpmfile.cjs', '.pnpmfile.mjs', 'pnpm-workspace.yaml'],
    reason: 'pnpm runs .pnpmfile hooks at install; pnpm-workspace.yaml sets which dependencies may run build scripts, overrides and patches',
  },
  {
    id: 'js-bun',
    ecosystem: 'JavaScript',
    paths: ['bunfig.toml', '.bunfig.toml'],
    reason: 'bun runs the preload scripts it names before every run and test',
  },
  {
    id: 'js-node-gyp',
    ecosystem: 'JavaScript',
    paths: ['binding.gyp', '*.gypi'],
    reason: 'npm install runs node-gyp, whose .gyp files run commands',
  },
  {
    id: 'js-node-modules',
    ecosystem: 'JavaScript',
    paths: ['node_modules/**'],
    reason: "npx and package scripts run node_modules/.bin; node loads packages from here instead of the registry's",
  },
  {
    id: 'js-tool-config',
    ecosystem: 'JavaScript',
    paths: [
      '*.config.{js,cjs,mjs,ts,cts,mts}',
      '.eslintrc.{js,cjs,mjs,ts,cts,mts}',
      '.prettierrc.{js,cjs,mjs,ts,cts,mts}',
      '.babelrc.{js,cjs,mjs,ts,cts,mts}',
      '.mocharc.{js,cjs,mjs,ts,cts,mts}',
      'gulpfile.{js,cjs,mjs,ts,cts,mts}',
      'gruntfile.{js,cjs,mjs,ts,cts,mts}',
      'karma.conf.{js,cjs,mjs,ts,cts,mts}',
      '.lintstagedrc.{js,cjs,mjs,ts,cts,mts}',
    ],
    reason: 'eslint, prettier, vite, jest and others run their config files as code; editor extensions run eslint and prettier configs on opening a ' + 'file',
  },
  // Rust
  {
    id: 'rust-build-script',
    ecosystem: 'Rust',
    paths: ['build.rs'],
    reason: 'cargo build and rust-analyzer (on opening the project) compile and run it',
  },
  {
    id: 'rust-cargo-toml',
    ecosystem: 'Rust',
    paths: ['Cargo.toml'],
    content: 'cargo-toml',
    reason: 'cargo runs the build script and proc macros it names and builds the dependencies it lists (their build scripts run too)',
    when: 'anything but [package] metadata (name, version, description, authors, license, readme, keywords, …) and [badges] changed',
  },
  {
    id: 'rust-cargo-config',
    ecosystem: 'Rust',
    paths: ['.cargo/config', '.cargo/config.toml'],
    reason: 'cargo takes rustc wrappers, runners, linkers, aliases and environment from it, in this folder and below',
  },
  {
    id: 'rust-toolchain',
    ecosystem: 'Rust',
    paths: ['rust-toolchain', 'rust-toolchain.toml'],
    reason: 'rustup installs and runs the toolchain it names (a path: from the repository)',
  },
  // Go
  {
    id: 'go-generate',
    ecosystem: 'Go',
    paths: ['*.go'],
    content: 'go-generate',
    reason: 'go generate runs the commands of its //go:generate lines',
    when: 'a //go:generate line was added or changed',
  },
  {
    id: 'go-mod',
    ecosystem: 'Go',
    paths: ['go.mod'],
    content: 'go-mod',
    reason:
      'the go command downloads and runs the toolchain its go and toolchain lines ask for, builds replaced modules from the paths it gives, and runs its tools (go tool)',
    when: 'a go, toolchain, replace, tool or godebug line changed',
  },
  {
    id: 'go-work',
    ecosystem: 'Go',
    paths: ['go.work'],
    reason: 'the go command builds the modules it uses and replaces, and runs the toolchain it names',
  },
  // C/C++
  {
    id: 'c-make',
    ecosystem: 'C/C++',
    paths: ['makefile', 'gnumakefile', 'makefile.{am,in}', '*.mk', '*.mak'],
    reason: 'make runs the commands it lists',
  },
  {
    id: 'c-cmake',
    ecosystem: 'C/C++',
    paths: ['CMakeLists.txt', '*.cmake', 'CMakePresets.json', 'CMakeUserPresets.json'],
    reason: 'cmake runs these scripts (execute_process) at configure; IDEs configure on opening the project',
  },
  {
    id: 'c-meson',
    ecosystem: 'C/C++',
    paths: ['meson.build', 'meson_options.txt', 'meson.options'],
    reason: 'meson runs run_command() and custom targets at configure and build',
  },
  {
    id: 'c-autotools',
    ecosystem: 'C/C++',
    paths: ['configure', 'configure.{ac,in}', 'autogen.sh', 'bootstrap.sh', '*.m4'],
    reason: 'the build runs ./configure and autogen.sh, generated from these',
  },
  {
    id: 'c-other-builds',
    ecosystem: 'C/C++',
    paths: ['SConstruct', 'SConscript', 'build.ninja', '*.ninja', 'xmake.lua', 'premake5.lua', 'conanfile.txt', 'vcpkg.json'],
    reason: 'scons, ninja, xmake, premake, conan and vcpkg run the commands and recipes these name',
  },
  // JVM
  {
    id: 'jvm-gradle',
    ecosystem: 'JVM',
    paths: ['*.gradle', '*.gradle.kts', 'gradle.properties', 'buildSrc/**', 'gradle/*.toml', 'gradle/verification-*'],
    reason:
      'gradle runs its build scripts and buildSrc (IDEs sync them on opening), takes JVM options (agents) from gradle.properties and trusts the ' +
      'verification metadata',
  },
  {
    id: 'jvm-gradle-wrapper',
    ecosystem: 'JVM',
    paths: ['gradlew', 'gradlew.bat', 'gradle/wrapper/**'],
    reason: './gradlew runs the wrapper jar and the distribution its properties name',
  },
  {
    id: 'jvm-maven',
    ecosystem: 'JVM',
    paths: ['pom.xml', '.mvn/**', 'mvnw', 'mvnw.cmd'],
    reason: 'mvn runs the plugins and extensions these name and the JVM options of .mvn; ./mvnw runs .mvn/wrapper',
  },
  {
    id: 'jvm-sbt',
    ecosystem: 'JVM',
    paths: ['*.sbt', 'project/*.scala', 'project/build.properties', '.sbtopts', '.jvmopts'],
    reason: 'sbt compiles and runs the build definition, with the JVM options of .sbtopts/.jvmopts',
  },
  // Bazel
  {
    id: 'bazel',
    ecosystem: 'Bazel',
    paths: [
      'BUILD',
      'BUILD.bazel',
      'WORKSPACE',
      'WORKSPACE.bazel',
      'WORKSPACE.bzlmod',
      'MODULE.bazel',
      '*.bzl',
      '.bazelrc',
      '.bazelversion',
      'tools/bazel',
      'BUCK',
      'pants.toml',
    ],
    reason: 'bazel runs the rules and repository rules these define with the flags of .bazelrc; bazelisk runs tools/bazel and the version it names',
  },
  // Ruby
  {
    id: 'ruby',
    ecosystem: 'Ruby',
    paths: [
      'Rakefile',
      'Rakefile.rb',
      '*.rake',
      'Gemfile',
      'gems.rb',
      '*.gemspec',
      '.bundle/config',
      'Guardfile',
      'Capfile',
      '.rspec',
      '.rspec-local',
      '.irbrc',
      '.pryrc',
    ],
    reason: 'bundler evaluates Gemfile and gemspecs as Ruby; rake runs Rakefile; rspec, irb and pry load the files these name',
  },
  // Dependencies
  {
    id: 'lockfile',
    ecosystem: 'Dependencies',
    paths: [
      'package-lock.json',
      'npm-shrinkwrap.json',
      'yarn.lock',
      'pnpm-lock.yaml',
      'bun.lock',
      'bun.lockb',
      'Cargo.lock',
      'poetry.lock',
      'uv.lock',
      'pdm.lock',
      'Pipfile.lock',
      'Gemfile.lock',
      'gems.locked',
      'flake.lock',
      'gradle.lockfile',
    ],
    reason: 'installs take exactly the packages and download URLs it names and run their install scripts',
  },
] as const satisfies readonly ReviewRule[];
