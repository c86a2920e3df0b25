import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, existsSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, gitIn, MOAT_COMMAND, Scratch, serverPids, stopServers } from '../helpers/fixtures.js';

/**
 * The `moat` command (bin/moat) runs exec through the native client (native/client.c) on the warm
 * server, without starting Node; with no server of this user's to talk to, Node runs the command,
 * as before. Which program served a command is read from /proc/<pid>/exe while it runs: bin/moat
 * and the client exec() in place, so the pid stays the same.
 */
const CLIENT = join(import.meta.dirname, '..', '..', 'dist', 'native', 'moat-client');

describe('moat exec through the native client', () => {
  const scratch = new Scratch();
  const run = join(scratch.root, 'run');
  const socketDir = join(run, `moat-${process.getuid!()}`);
  const env = { MOAT_POOL: 'off' };
  // The server's socket for this environment (found once a server made it).
  let socket = '';

  function moat(args: string[], input: string | Buffer = '') {
    const result = spawnSync(MOAT_COMMAND, args, { cwd: scratch.repo, env: scratch.env(env), input, maxBuffer: 64 * 1024 * 1024 });
    return { code: result.status, out: result.stdout, err: result.stderr.toString() };
  }

  /** Runs an exec whose command prints "started" then sleeps; says which program the pid ran while it did. */
  async function programDuring(args: string[]): Promise<{ program: string; code: number | null; out: string }> {
    const child = spawn(MOAT_COMMAND, [...args, '--', 'sh', '-c', 'echo started; sleep 1; echo done'], {
      cwd: scratch.repo,
      env: scratch.env(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let program = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!program && out.includes('started')) program = readlinkSync(`/proc/${child.pid}/exe`);
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    return { program, code, out };
  }

  async function serverUp(): Promise<string> {
    const pids = await eventually(
      async () => serverPids(run).filter((pid) => existsSync(`/proc/${pid}`)),
      (p) => p.length === 1,
      10_000,
    );
    expect(pids).toHaveLength(1);
    const sockets = readdirSync(socketDir).filter((f) => f.endsWith('.sock'));
    expect(sockets).toHaveLength(1);
    return join(socketDir, sockets[0]!);
  }

  beforeAll(async () => {
    // Built by `npm run build` wherever a C compiler is (CI has one).
    expect(existsSync(CLIENT), 'dist/native/moat-client not built: npm run build with a C compiler').toBe(true);
    const up = moat(['up', '--task', 'nat']);
    expect(up.code, up.err).toBe(0);
    socket = await serverUp();
  });
  afterAll(() => scratch.cleanup());

  it('runs exec with a warm server without starting Node', async () => {
    const served = await programDuring(['exec', 'nat', '--no-sync']);
    expect(served.program).toBe(CLIENT);
    expect(served.code).toBe(0);
    expect(served.out).toBe('started\ndone\n');
  });

  it('runs run with a warm server without starting Node, its -t being the template, not a terminal', async () => {
    const served = await programDuring(['run', '-t', 'shell']);
    expect(served.program).toBe(CLIENT);
    expect(served.code).toBe(0);
    expect(served.out).toBe('started\ndone\n');
    const failed = moat(['run', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(failed.code).toBe(3);
    expect(failed.out.toString()).toBe('out\n');
    // The tasks that left no work are gone: only the one made for the other tests is left.
    const list = moat(['ls', '--json']);
    expect(JSON.parse(list.out.toString()).map((t: { name: string }) => t.name)).toEqual(['nat']);
  });

  it.each([0, 1, 3, 255])('passes exit status %i through, stdout and stderr apart', (status) => {
    const result = moat(['exec', 'nat', '--no-sync', '--', 'sh', '-c', `echo out; echo err >&2; exit ${status}`]);
    expect(result.code).toBe(status);
    expect(result.out.toString()).toBe('out\n');
    expect(result.err).toBe('err\n');
  });

  it("passes 137 through for a command killed by SIGKILL, with moat's explanation", () => {
    const result = moat(['exec', 'nat', '--no-sync', '--', 'sh', '-c', 'kill -9 $$']);
    expect(result.code).toBe(137);
    expect(result.err).toMatch(/SIGKILL/);
  });

  it('pipes stdin to the command (8 MB, more than any buffer on the way) and large output back', () => {
    const input = randomBytes(8 * 1024 * 1024);
    const hashed = moat(['exec', 'nat', '--no-sync', '--', 'sha256sum'], input);
    expect(hashed.code).toBe(0);
    expect(hashed.out.toString().split(' ')[0]).toBe(createHash('sha256').update(input).digest('hex'));
    // Output and input at once: cat echoes 8 MB while it still reads.
    const echoed = moat(['exec', 'nat', '--no-sync', '--', 'cat'], input);
    expect(echoed.code).toBe(0);
    expect(Buffer.compare(echoed.out, input)).toBe(0);
    const big = moat(['exec', 'nat', '--no-sync', '--', 'sh', '-c', 'head -c 30000000 /dev/zero; echo end >&2']);
    expect(big.code).toBe(0);
    expect(big.out.length).toBe(30_000_000);
    expect(big.err).toBe('end\n');
  });

  it('carries Ctrl-C to the command, which ends; moat exits 130', async () => {
    const child = spawn(MOAT_COMMAND, ['exec', 'nat', '--no-sync', '--', 'sh', '-c', 'echo started; sleep 60; echo never'], {
      cwd: scratch.repo,
      env: scratch.env(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let program = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!program && out.includes('started')) {
        program = readlinkSync(`/proc/${child.pid}/exe`);
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(program).toBe(CLIENT);
    expect(code).toBe(130);
    expect(out).not.toContain('never');
    const ps = moat(['exec', 'nat', '--no-sync', '--', 'sh', '-c', 'ps -eo args | grep -c "^sleep 60" || true']);
    expect(ps.out.toString().trim()).toBe('0');
  });

  it('kill -9 of the client mid-command: the command ends and its commit still comes home', async () => {
    const script = 'echo started; sleep 2; echo k > k.txt && git add k.txt && git -c user.name=a -c user.email=a@a.invalid commit -qm after-client-killed';
    const child = spawn(MOAT_COMMAND, ['exec', 'nat', '--', 'sh', '-c', script], {
      cwd: scratch.repo,
      env: scratch.env(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let program = '';
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        if (!program && d.toString().includes('started')) {
          program = readlinkSync(`/proc/${child.pid}/exe`);
          child.kill('SIGKILL');
          resolve();
        }
      }),
    );
    expect(program).toBe(CLIENT);
    const branch = () => gitIn(scratch.repo, 'log', '--format=%s', 'moat/nat');
    expect(
      await eventually(
        async () => branch(),
        (log) => log.includes('after-client-killed'),
        20_000,
      ),
    ).toContain('after-client-killed');
  });

  it('runs exec -t in a terminal through Node (the native client has no TTY mode)', () => {
    const result = spawnSync('script', ['-qec', `${MOAT_COMMAND} exec -t nat --no-sync -- sh -c 'tty; exit 4'`, '/dev/null'], {
      cwd: scratch.repo,
      env: scratch.env(env),
      encoding: 'utf8',
      input: '',
      timeout: 60_000,
    });
    expect(result.stdout).toMatch(/\/dev\/pts\/\d+/);
    expect(result.status).toBe(4);
  });

  it('reads frames however they are cut, skips unknown ones, and stops at a broken one', async () => {
    await stopServers(run);
    const frame = (type: number, body: Buffer, length = body.length) => {
      const head = Buffer.alloc(5);
      head.writeUInt8(type, 0);
      head.writeUInt32BE(length, 1);
      return Buffer.concat([head, body]);
    };
    const status = (code: number) => {
      const body = Buffer.alloc(4);
      body.writeInt32BE(code, 0);
      return body;
    };
    // What the stand-in server answers, one byte at a time, to each connection in turn.
    const scripts = [
      Buffer.concat([
        frame(1, Buffer.from('hel')),
        frame(9, Buffer.from('junk')),
        frame(2, Buffer.from('e')),
        frame(1, Buffer.from('lo')),
        frame(3, status(42)),
      ]),
      // A frame that says 4 GB and ends after 10 bytes.
      frame(1, Buffer.from('0123456789'), 0xfffffff0),
      frame(3, Buffer.from([0, 0, 1])),
    ];
    const requests: string[] = [];
    const fake = createServer((connection) => {
      const script = scripts[requests.length]!;
      // A client that stopped at a broken frame has gone before the rest is written.
      connection.on('error', () => undefined);
      let request = '';
      connection.on('data', async (d: Buffer) => {
        if (request.includes('\n')) return;
        request += d.toString();
        if (!request.includes('\n')) return;
        requests.push(request);
        for (const byte of script) {
          if (connection.destroyed) return;
          connection.write(Buffer.from([byte]));
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        connection.end();
      });
    });
    await new Promise<void>((resolve) => fake.listen(socket, resolve));
    const client = async () => {
      const child = spawn(MOAT_COMMAND, ['exec', 'nat', '--', 'true'], { cwd: scratch.repo, env: scratch.env(env), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      return { code, out, err };
    };
    try {
      expect(await client()).toEqual({ code: 42, out: 'hello', err: 'e' });
      expect(JSON.parse(requests[0]!.split('\n')[0]!)).toMatchObject({
        argv: [expect.any(String), expect.stringMatching(/bin\/moat\.js$/), 'exec', 'nat', '--', 'true'],
        cwd: scratch.repo,
        stdinIsTTY: false,
      });
      const cut = await client();
      expect([cut.code, cut.out]).toEqual([70, '0123456789']);
      expect(cut.err).toMatch(/the moat server ended before the command finished/);
      const broken = await client();
      expect([broken.code, broken.out]).toEqual([70, '']);
      expect(broken.err).toMatch(/the moat server ended before the command finished/);
    } finally {
      await new Promise((resolve) => fake.close(resolve));
    }
  });

  it("with no server, or a socket that is not this user's, Node runs the command and nothing else is spoken to", async () => {
    await stopServers(run);
    expect(existsSync(socket)).toBe(false);

    // No server: Node runs it (and starts the server for the next one).
    const none = await programDuring(['exec', 'nat', '--no-sync']);
    expect(none.program).toBe(readlinkSync('/proc/self/exe'));
    expect([none.code, none.out]).toEqual([0, 'started\ndone\n']);
    expect(await serverUp()).toBe(socket);
    await stopServers(run);

    // A plain file where the socket would be.
    writeFileSync(socket, 'not a socket');
    const file = await programDuring(['exec', 'nat', '--no-sync']);
    expect(file.program).toBe(readlinkSync('/proc/self/exe'));
    expect([file.code, file.out]).toEqual([0, 'started\ndone\n']);
    await stopServers(run);
    rmSync(socket, { force: true });

    // A listening socket owned by another user: never sent a request.
    const heard: Buffer[] = [];
    const planted = createServer((connection) => connection.on('data', (d: Buffer) => heard.push(d)));
    await new Promise<void>((resolve) => planted.listen(socket, resolve));
    try {
      chownSync(socket, 65534, 65534);
      const other = await programDuring(['exec', 'nat', '--no-sync']);
      expect(other.program).toBe(readlinkSync('/proc/self/exe'));
      expect([other.code, other.out]).toEqual([0, 'started\ndone\n']);
      expect(Buffer.concat(heard).toString()).toBe('');
    } finally {
      await new Promise((resolve) => planted.close(resolve));
      await stopServers(run);
    }
  });
});
