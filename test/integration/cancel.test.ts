import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { eventually, gitIn, MOAT_COMMAND, type Scratch, scratchPool, serverPids, stopServers } from '../helpers/fixtures.js';

/**
 * Ctrl-C (SIGINT) or TERM during `moat up`, with and without the warm server: the up is
 * cancelled, everything it had made is removed, moat exits 128+signal with one line. Held at
 * real slow points (a template build, a devcontainer's postCreateCommand), and at any moment.
 */
const pool = scratchPool();
afterEach(() => pool.cleanup());

type Mode = 'own process' | 'warm server' | 'a task made ahead';
const modeEnv = (mode: Mode): Record<string, string> =>
  ({ 'own process': { MOAT_SERVER: 'off' }, 'warm server': { MOAT_POOL: 'off' }, 'a task made ahead': {} })[mode];
const LOOK = { MOAT_SERVER: 'off' };

/** The CLI without a terminal; LOOK (no server) to inspect without changing what a server does. */
function moat(scratch: Scratch, args: string[], env: Record<string, string>) {
  const result = spawnSync(MOAT_COMMAND, args, { cwd: scratch.repo, env: scratch.env(env), encoding: 'utf8', input: '' });
  return { code: result.status, out: result.stdout, err: result.stderr };
}

/** A warm server for this environment, up before the command under test. */
async function warmServer(scratch: Scratch, env: Record<string, string>): Promise<void> {
  spawnSync(MOAT_COMMAND, ['ls'], { cwd: scratch.repo, env: scratch.env(env), input: '' });
  await eventually(
    async () => serverPids(join(scratch.root, 'run')).length,
    (n) => n >= 1,
    10_000,
  );
}

/** Starts `moat ARGS`; sends `signal` once stderr shows `when` (or after `when` ms); resolves with what it did. */
function interrupted(scratch: Scratch, args: string[], env: Record<string, string>, signal: NodeJS.Signals, when: string | number) {
  const child = spawn(MOAT_COMMAND, args, { cwd: scratch.repo, env: scratch.env(env), stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let sent = false;
  const send = () => {
    if (sent) return;
    sent = true;
    child.kill(signal);
  };
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    if (typeof when === 'string' && err.includes(when)) send();
  });
  if (typeof when === 'number') setTimeout(send, when);
  return new Promise<{ status: number; out: string; err: string }>((resolve) => {
    child.on('close', (code, killedBy) => resolve({ status: code ?? 128 + (killedBy === 'SIGTERM' ? 15 : 2), out, err }));
  });
}

async function containers(scratch: Scratch): Promise<Docker.ContainerInfo[]> {
  const docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
  return docker.listContainers({ all: true, filters: { label: [`moat.home=${scratch.moat().context.store.homeKey}`] } });
}

/** Everything an up makes, looked for where it would be. */
async function leftovers(scratch: Scratch) {
  const list = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);
  const repos = join(scratch.home, 'repos');
  return {
    tasks: list(repos).flatMap((repo) => list(join(repos, repo, 'tasks'))),
    refs: gitIn(scratch.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/', 'refs/moat/').split('\n').filter(Boolean),
    containers: (await containers(scratch)).map((c) => c.Names[0]),
    gatewaySockets: list(join(scratch.home, 's')),
    mounts: readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((line) => line.includes(`${scratch.root}/`)),
  };
}
const NOTHING = { tasks: [], refs: [], containers: [], gatewaySockets: [], mounts: [] };

function expectGcFindsNothing(scratch: Scratch): void {
  const gc = moat(scratch, ['gc', '--json'], LOOK);
  expect(gc.code, gc.err).toBe(0);
  expect(JSON.parse(gc.out)).toEqual({ removedContainers: [], removedVolumes: [], removedTasks: [], removedSpares: [] });
}

function expectOneCancelLine(err: string, signal: 'SIGINT' | 'SIGTERM'): void {
  const lines = err.split('\n').filter((line) => line.startsWith('moat: error'));
  expect(lines).toEqual([`moat: error: up cancelled (${signal}); what it had started was removed`]);
}

describe('Ctrl-C during moat up', () => {
  it.each<Mode>(['own process', 'warm server'])('during a template build (%s): exit 130, one line, nothing left, the build stopped', async (mode) => {
    const scratch = pool.scratch();
    // A template of the user's whose build takes long at a step that prints first.
    const templates = join(scratch.root, 'templates');
    mkdirSync(join(templates, 'slow'), { recursive: true });
    const marker = `slow-build-${Date.now()}-${mode.replace(' ', '-')}`;
    writeFileSync(
      join(templates, 'slow', 'Dockerfile'),
      `ARG BASE_IMAGE\nFROM \${BASE_IMAGE}\nARG MOAT_UID\nARG MOAT_GID\nCOPY sandbox-user.sh /tmp/\nRUN sh /tmp/sandbox-user.sh "$MOAT_UID" "$MOAT_GID"\nRUN echo ${marker} && sleep 600\n`,
    );
    scratch.writeConfig(`templates: [${templates}]\n`);
    const env = modeEnv(mode);
    if (mode !== 'own process') await warmServer(scratch, env);

    const result = await interrupted(scratch, ['up', '--task', 'slow', '-t', 'slow'], env, 'SIGINT', marker);
    // Without the cancel reaching the build, moat would wait for it (ten minutes): the test would time out.
    expect(result.status, result.err).toBe(130);
    expectOneCancelLine(result.err, 'SIGINT');
    expect(await leftovers(scratch)).toEqual(NOTHING);
    expectGcFindsNothing(scratch);
    // The engine stopped building too.
    const building = () => execFileSync('docker', ['ps', '--no-trunc', '--format', '{{.Command}}'], { encoding: 'utf8' });
    expect(
      await eventually(
        async () => building(),
        (ps) => !ps.includes(marker),
        20_000,
      ),
    ).not.toContain(marker);
    expect(execFileSync('docker', ['images', '--format', '{{.Repository}}'], { encoding: 'utf8' }).split('\n')).not.toContain('moat-slow');
  });

  it.each<[Mode, NodeJS.Signals]>([
    ['own process', 'SIGINT'],
    ['warm server', 'SIGTERM'],
  ])('with the container up and a network, during postCreateCommand (%s, %s): all of it is rolled back', async (mode, signal) => {
    const scratch = pool.scratch();
    mkdirSync(join(scratch.repo, '.devcontainer'));
    writeFileSync(join(scratch.repo, '.devcontainer', 'devcontainer.json'), '{ "image": "moat-base:bookworm", "postCreateCommand": "sleep 600" }\n');
    gitIn(scratch.repo, 'add', '-A');
    gitIn(scratch.repo, 'commit', '-qm', 'devcontainer');
    const env = modeEnv(mode);
    if (mode !== 'own process') await warmServer(scratch, env);

    // The progress line comes right before the command runs: branch, workspace, record,
    // gateway registration and container all exist by then.
    const result = await interrupted(
      scratch,
      ['up', '--task', 'dev', '--devcontainer', '--allow', 'example.invalid'],
      env,
      signal,
      'devcontainer: postCreateCommand',
    );
    expect(result.err).toContain('devcontainer: postCreateCommand');
    expect(result.status, result.err).toBe(signal === 'SIGTERM' ? 143 : 130);
    expectOneCancelLine(result.err, signal === 'SIGTERM' ? 'SIGTERM' : 'SIGINT');
    expect(await leftovers(scratch)).toEqual(NOTHING);
    expectGcFindsNothing(scratch);
  });

  it.each<Mode>(['own process', 'warm server', 'a task made ahead'])(
    'at any moment (%s): the task is whole or gone, and gone whenever moat exits 130',
    async (mode) => {
      const scratch = pool.scratch();
      const env = modeEnv(mode);
      if (mode !== 'own process') await warmServer(scratch, env);
      const outcomes: number[] = [];
      for (const delay of [0, 150, 400, 700, 1000, 1400, 2000]) {
        if (mode === 'a task made ahead') {
          // A nameless up of the common shape takes the task the server made ahead (or waits for it).
          expect(moat(scratch, ['run', '--', 'true'], env).code).toBe(0);
          await eventually(
            () => containers(scratch),
            (list) => list.length >= 1,
            20_000,
          );
        }
        const args = mode === 'a task made ahead' ? ['up', '--json'] : ['up', '--task', 'any', '--json'];
        const result = await interrupted(scratch, args, env, 'SIGINT', delay);
        outcomes.push(result.status);
        const tasks = await scratch.moat().ls();
        if (result.status === 0) {
          // Whole: the record, its running container and its branch.
          const name = JSON.parse(result.out).name as string;
          expect(tasks.map((t) => [t.name, t.state])).toEqual([[name, 'running']]);
          expect(gitIn(scratch.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/')).toBe(`refs/heads/moat/${name}`);
          expect(moat(scratch, ['rm', '--force', name], LOOK).code).toBe(0);
        } else {
          expect(result.status, result.err).toBe(130);
          // Cancelled before moat listened (killed by the signal), or by moat: nothing either way.
          if (result.err.includes('moat: error')) expectOneCancelLine(result.err, 'SIGINT');
          expect(tasks).toEqual([]);
          expect(gitIn(scratch.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/moat/')).toBe('');
        }
        if (mode === 'own process') {
          expect(await leftovers(scratch)).toEqual(NOTHING);
          expectGcFindsNothing(scratch);
        }
      }
      // What the server made ahead is the server's: gone with it, and nothing else is left.
      await stopServers(join(scratch.root, 'run'));
      expect(await leftovers(scratch)).toEqual(NOTHING);
      expectGcFindsNothing(scratch);
      expect(outcomes).toHaveLength(7);
    },
    300_000,
  );
});
