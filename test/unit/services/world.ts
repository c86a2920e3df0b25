import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { afterEach } from 'vitest';
import { MoatContext, type MoatOptions } from '../../../src/service/context.js';
import { WORKSPACE_DIR } from '../../../src/domain/sandbox-spec.js';
import { MemoryEngine, type MemoryContainer } from '../../../src/engine/memory-engine.js';

const GIT_ENV = {
  GIT_AUTHOR_NAME: 'Test User',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'Test User',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
};

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: { ...process.env, ...GIT_ENV }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/**
 * One test's world: a user repository with a commit, a moat home, and a {@link MemoryEngine}
 * whose sandboxes behave like moat's (see {@link gitSandbox}). No dockerd anywhere.
 */
export class World {
  readonly root = mkdtempSync(join(tmpdir(), 'moat-unit-'));
  readonly repo = join(this.root, 'repo');
  readonly home = join(this.root, 'home');
  readonly engine: MemoryEngine;
  readonly sandbox: GitSandbox;

  constructor(options: { engine?: MemoryEngine } = {}) {
    mkdirSync(this.repo);
    git(this.repo, 'init', '-q', '--initial-branch=main');
    writeFileSync(join(this.repo, 'README.md'), '# sample\n');
    git(this.repo, 'add', '-A');
    git(this.repo, 'commit', '-qm', 'initial');
    // A template of the user's with a file for the sandbox's home (written through exec by up and reset).
    const templates = join(this.root, 'templates');
    mkdirSync(join(templates, 'agentish'), { recursive: true });
    writeFileSync(
      join(templates, 'agentish', 'template.yaml'),
      'description: a test agent\nbuild: _toolchains\ntoolchains: []\nhome:\n  .agentish/config.toml: |\n    model = "x"\n',
    );
    writeFileSync(join(this.root, 'config.yaml'), `templates: [${templates}]\n`);
    this.engine = options.engine ?? new MemoryEngine({ images: ['moat-base:bookworm'] });
    this.sandbox = gitSandbox(this.engine, join(this.root, 'volumes'));
  }

  context(options: MoatOptions = {}): MoatContext {
    return new MoatContext({
      cwd: this.repo,
      env: { PATH: process.env.PATH, MOAT_HOME: this.home, MOAT_CONFIG: join(this.root, 'config.yaml'), XDG_RUNTIME_DIR: join(this.root, 'run'), ...GIT_ENV },
      engine: async () => this.engine,
      hostUser: { uid: 1000, gid: 1000 },
      ...options,
    });
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

export interface GitSandbox {
  /** The host folder that stands for a container's /workspace. */
  workspace(container: MemoryContainer): string;
  /** Makes the snapshot (moat's sync) fail in every container, with this exit status, from now on. */
  breakSnapshots(exitCode: number): void;
}

/**
 * Sandboxes that run moat's own scripts (seed, snapshot) with the real git, on a host folder
 * standing for /workspace: a volume's folder under `volumesDir`, or the bind-mounted host path.
 * The scripts are moat's constants, not the sandbox's: running them here tests what moat sends.
 * Also: the template's home files (kept in the container's files), and `commit MESSAGE`, which
 * commits a new file in the workspace as an agent would.
 */
export function gitSandbox(engine: MemoryEngine, volumesDir: string): GitSandbox {
  let snapshotFailure: number | undefined;
  const workspace = (container: MemoryContainer) => {
    const source = container.spec.workspace;
    const dir = source.kind === 'host' ? source.path : join(volumesDir, source.name);
    mkdirSync(dir, { recursive: true });
    return dir;
  };
  const script = (cmd: string[], marker: string) => cmd[0] === 'sh' && cmd[1] === '-c' && cmd[3] === marker;
  engine.onExec(
    (cmd) => script(cmd, WORKSPACE_DIR) && cmd[2]!.includes('moat-seed.bundle'),
    ({ container, command, stdin, stdout, stderr }) => run(['sh', '-c', command.cmd[2]!, workspace(container), ...command.cmd.slice(4)], stdin, stdout, stderr),
  );
  engine.onExec(
    (cmd) => script(cmd, 'moat-sync'),
    ({ container, command, stdout, stderr }) => {
      if (snapshotFailure !== undefined) {
        stderr.write('snapshot failed\n');
        return snapshotFailure;
      }
      const dir = workspace(container);
      return run(['sh', '-c', command.cmd[2]!.replaceAll(WORKSPACE_DIR, dir), ...command.cmd.slice(3)], undefined, stdout, stderr, dir);
    },
  );
  engine.onExec(
    (cmd) => script(cmd, 'seed'),
    async ({ container, command, stdin }) => {
      const chunks: Buffer[] = [];
      for await (const chunk of stdin ?? []) chunks.push(chunk as Buffer);
      container.files.set(command.cmd[4]!, Buffer.concat(chunks));
      return 0;
    },
  );
  engine.onExec(
    (cmd) => cmd[0] === 'commit' && cmd.length === 2,
    ({ container, command }) => {
      const dir = workspace(container);
      writeFileSync(join(dir, `${command.cmd[1]}.txt`), `${command.cmd[1]}\n`);
      git(dir, 'add', '-A');
      git(dir, 'commit', '-qm', command.cmd[1]!);
      return 0;
    },
  );
  return {
    workspace,
    breakSnapshots: (exitCode) => {
      snapshotFailure = exitCode;
    },
  };
}

function run(argv: string[], stdin: Readable | undefined, stdout: Writable, stderr: Writable, cwd?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env: { ...process.env, ...GIT_ENV }, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => stdout.write(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.write(chunk));
    if (stdin) stdin.pipe(child.stdin);
    else child.stdin.end();
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
}

/**
 * The worlds of one test file: `const world = worlds();` at its top, then `world()` in a test; each
 * world is cleaned up after the test that made it, also when the test fails.
 */
export function worlds(): (options?: { engine?: MemoryEngine }) => World {
  const made: World[] = [];
  afterEach(() => {
    for (const world of made.splice(0)) world.cleanup();
  });
  return (options) => {
    const world = new World(options);
    made.push(world);
    return world;
  };
}
