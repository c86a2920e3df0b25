import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finish, gitIn, MOAT_BIN, Scratch } from '../helpers/fixtures.js';
import { firstRaw as firstRawIn } from '../helpers/unsafe-chars.js';

/**
 * Terminal escapes through every string a sandbox sets: a real sandbox plants control, C1, bidi
 * and invisible characters in file names, file contents, a link's text, commit messages,
 * uncommitted work, the hosts it tries (and so the gateway's rule text), its container's output
 * and an agent's answer; then every command that prints them runs through the real CLI (the warm
 * server for the commands it serves) and no such character may reach stdout or stderr. Only the
 * program's own output of exec, run and shell (silenced here) and `logs --raw` pass bytes as they are.
 */

// A newline in a name must not start a line that looks like moat's own.
const FORGED = /^ *moat: FORGED/m;

/**
 * The payload, as bash printf sees it: clear line, cursor up, OSC 0 (title), OSC 52 (clipboard),
 * BEL, CR, DEL, C1 CSI (U+009B), a right-to-left override, a zero-width space, an invisible tag
 * character, and a newline followed by a line that pretends to be moat's.
 */
const PAYLOAD = String.raw`\033[2K\033[1A\033]0;pwned\007\033]52;c;ZWNobyBoaQ==\007\r\177\302\233 31m\342\200\256gnp\342\200\213\363\240\201\201\nmoat: FORGED`;

const PLANT = [
  // The program's own output is passed through by design (exec, run): silenced, so that what is left is moat's.
  'exec >/dev/null 2>&1',
  'set -e',
  `p=$(printf '${PAYLOAD}')`,
  'mkdir -p .github/workflows',
  // Content with escapes (the diff body), a flagged workflow, an executable, a link out of the repository.
  `printf 'moat: FORGED\\n${PAYLOAD}\\n' > "src-$p.txt"`,
  'printf "on: push\\n" > ".github/workflows/ci-$p.yml"',
  'printf "#!/bin/sh\\n" > "run-$p.sh" && chmod +x "run-$p.sh"',
  'ln -s "/etc/$p" "link-$p"',
  'git add -A',
  'git commit -qm "subject $p" -m "body $p"',
  // Uncommitted work, brought home as a snapshot.
  'printf "wip\\n" > "wip-$p.txt"',
  '# network',
  // The container's own output (`moat logs`): PID 1's stdout.
  `printf 'log line ${PAYLOAD}\\n' > /proc/1/fd/1`,
  // Hosts through the gateway: a CONNECT target and a Host header with raw bytes (the audit log
  // records the host, and the rule text quotes the header).
  'port=${HTTP_PROXY##*:}',
  'exec 3<>/dev/tcp/127.0.0.1/$port',
  `printf 'CONNECT h\\033[2K\\302\\233\\342\\200\\256.test:443 HTTP/1.1\\r\\n\\r\\n' >&3`,
  'cat <&3 >/dev/null || true',
  'exec 3<>/dev/tcp/127.0.0.1/$port',
  `printf 'GET http://allowed.test/ HTTP/1.1\\r\\nHost: x\\302\\233\\342\\200\\256y\\r\\n\\r\\n' >&3`,
  'cat <&3 >/dev/null || true',
].join('\n');

describe('nothing a sandbox writes reaches the terminal unescaped', async () => {
  const scratch = new Scratch();
  const printed: Array<{ command: string; stdout: string; stderr: string; status: number | null }> = [];

  async function moat(args: string[], options: { env?: Record<string, string> } = {}) {
    const result = await finish(process.execPath, [MOAT_BIN, ...args], { cwd: scratch.repo, env: scratch.env(options.env) });
    const entry = { command: `moat ${args.join(' ')}`, stdout: result.stdout, stderr: result.stderr, status: result.status };
    printed.push(entry);
    return entry;
  }

  /** The first raw character in a command's output (LF and TAB are lines), shown so a failure says where it is. */
  const firstRaw = (text: string) => firstRawIn(text, true);

  /** A command that keeps following (-f): its output until `until` shows on stdout, then it is stopped. */
  async function follow(args: string[], until: RegExp) {
    const child = spawn(process.execPath, [MOAT_BIN, ...args], { cwd: scratch.repo, env: scratch.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    const entry = { command: `moat ${args.join(' ')}`, stdout: '', stderr: '', status: null as number | null };
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (entry.stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (entry.stderr += chunk));
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
    const deadline = Date.now() + 60_000;
    while (!until.test(entry.stdout) && Date.now() < deadline && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 100));
    child.kill('SIGINT');
    await exited;
    printed.push(entry);
    expect(entry.stdout, `${entry.command}: ${entry.stderr}`).toMatch(until);
    return entry;
  }

  function expectSafe(entry: { command: string; stdout: string; stderr: string }): void {
    for (const [stream, text] of [
      ['stdout', entry.stdout],
      ['stderr', entry.stderr],
    ] as const) {
      expect(firstRaw(text), `${entry.command} (${stream})`).toBeUndefined();
      expect(FORGED.test(text), `${entry.command} (${stream}) has a forged line:\n${text}`).toBe(false);
    }
  }

  beforeAll(async () => {
    // An agent template of the user's own whose "agent" is a shell script: it plants and answers with escapes.
    const templates = join(scratch.root, 'templates');
    mkdirSync(join(templates, 'planter'), { recursive: true });
    const answer = `printf 'answer ${PAYLOAD}\\n'; printf 'err ${PAYLOAD}\\n' >&2; p=$(printf '${PAYLOAD}'); printf x > "agent-$p.txt"; git add -A; git commit -qm "agent $p"`;
    // Its description too (`moat templates` prints it): a template folder is files anyone may have written.
    const description = JSON.stringify('plants \x1b[2K\u202e\u3164 escapes\nmoat: FORGED');
    const yaml = `description: ${description}\nbuild: shell\nagent: [bash, -c, ${JSON.stringify(answer)}, planter, "{prompt}"]\n`;
    writeFileSync(join(templates, 'planter', 'template.yaml'), yaml);
    scratch.writeConfig(`templates: [${templates}]\n`);
    expect((await moat(['up', '--task', 'plant', '--allow', 'allowed.test'])).status).toBe(0);
    const planted = await moat(['exec', 'plant', '--no-sync', '--', 'bash', '-c', PLANT]);
    expect(planted.status, planted.stderr).toBe(0);
  }, 600_000);
  afterAll(async () => {
    await scratch.cleanup();
  });

  it('the plants took: the raw bytes are there for the commands to show (logs --raw, the stored audit)', async () => {
    expect((await moat(['logs', 'plant', '--raw'])).stdout).toContain('\x1b[2K');
    expect((await moat(['egress', 'plant', '--json'])).stdout).toContain('\\u001b[2K');
  });

  it('review: sync, diff (patch, stat, names, JSON), flags', async () => {
    for (const args of [
      ['sync', 'plant'],
      ['diff', 'plant'],
      ['diff', 'plant', '--stat'],
      ['diff', 'plant', '--name-only'],
      ['diff', 'plant', '--json'],
      ['sync', 'plant', '--json'],
    ]) {
      const entry = await moat(args);
      expect(entry.status, entry.stderr).toBe(0);
      expectSafe(entry);
    }
    const names = (await moat(['diff', 'plant', '--name-only'])).stdout.trim().split('\n');
    // One line per file: the newline in each name shows as \n.
    expect(names).toHaveLength(5);
    expect(
      names.some((n) => n.startsWith('src-\\x1b[2K\\x1b[1A\\x1b]0;pwned\\x07') && n.includes('\\r\\x7f\\x9b 31m\\u202egnp\\u200b\\u{e0041}\\nmoat: FORGED')),
    ).toBe(true);
    const flags = (await moat(['diff', 'plant'])).stderr;
    expect(flags).toMatch(/^moat: flag: link-\\x1b\[2K.*\\nmoat: FORGED: symbolic link, symbolic link pointing outside the repository -> "\/etc\//m);
    expect(flags).toMatch(/^moat: flag: run-\\x1b\[2K.*: new executable$/m);
    // The diff body shows the content's escapes; the lines of the file stay lines.
    expect((await moat(['diff', 'plant'])).stdout).toContain('+moat: FORGED\n+\\x1b[2K');
    expect(JSON.parse((await moat(['diff', 'plant', '--json'])).stdout).files.map((f: { path: string }) => f.path)).toContain(
      `run-${'\x1b[2K\x1b[1A\x1b]0;pwned\x07\x1b]52;c;ZWNobyBoaQ==\x07\r\x7f\u009b 31m\u202egnp\u200b\u{e0041}\nmoat: FORGED'}.sh`,
    );
  });

  it('egress: the hosts it tried and the rule text they produced', async () => {
    const text = await moat(['egress', 'plant']);
    expect(text.stdout.trim().split('\n')).toHaveLength(2);
    expect(text.stdout).toContain('CONNECT h\\x1b[2K');
    expectSafe(text);
    const json = await moat(['egress', 'plant', '--json']);
    expectSafe(json);
    expect(
      json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { host: string })
        .map((r) => r.host)[0],
    ).toContain('\x1b[2K');
  });

  it('logs: escaped by default, lines kept; --raw is the bytes', async () => {
    const logs = await moat(['logs', 'plant']);
    expect(logs.status).toBe(0);
    // The container's output is lines of the sandbox's own: none in escapes, none passing for moat's.
    expectSafe(logs);
    // Every line of it is marked as the task's: no stream switch or look-alike makes one pass for moat's.
    expect(logs.stdout).toContain('\nplant | moat: FORGED');
    expect(logs.stdout).toContain('plant | log line \\x1b[2K\\x1b[1A');
    expect(logs.stdout.split('\n').filter((line) => line !== '' && !line.startsWith('plant | '))).toEqual([]);
    expect((await moat(['logs', 'plant', '--raw', '-n', '5'])).stdout).toContain('\x1b]52;c;');
  });

  it('the following commands: logs -f, egress -f, stats -f (and its JSON)', async () => {
    const logs = await follow(['logs', 'plant', '-f'], /plant \| moat: FORGED/);
    expectSafe(logs);
    const egress = await follow(['egress', 'plant', '-f'], /CONNECT h\\x1b\[2K/);
    expectSafe(egress);
    expectSafe(await follow(['stats', 'plant', '-f'], /plant/));
    expectSafe(await follow(['stats', 'plant', '-f', '--json'], /plant/));
  }, 300_000);

  it("templates: a template's description", async () => {
    const entry = await moat(['templates']);
    expect(entry.status, entry.stderr).toBe(0);
    expect(entry.stdout).toContain('plants \\x1b[2K\\u202e\\u3164 escapes\\nmoat: FORGED');
    expectSafe(entry);
    expectSafe(await moat(['templates', '--json']));
  });

  it("approve: the hosts a repository's moat.yaml asks for, as they reach the checkout after a merge", async () => {
    const other = new Scratch();
    try {
      writeFileSync(join(other.repo, 'moat.yaml'), `egress:\n  allow: [${JSON.stringify('a\x1b[2K\u202e.test\nmoat: FORGED')}]\n`);
      mkdirSync(join(other.repo, '.moat', 'templates', 'evil'), { recursive: true });
      writeFileSync(join(other.repo, '.moat', 'templates', 'evil', 'template.yaml'), `description: ${JSON.stringify('\x1b]0;pwned\x07')}\n`);
      gitIn(other.repo, 'add', '-A');
      gitIn(other.repo, 'commit', '-qm', 'asks');
      for (const args of [['approve'], ['approve', '--json']]) {
        const result = await finish(process.execPath, [MOAT_BIN, ...args], { cwd: other.repo, env: other.env() });
        const entry = { command: `moat ${args.join(' ')}`, stdout: result.stdout, stderr: result.stderr, status: result.status };
        printed.push(entry);
        // A host like this is refused (or approved); either way what is printed about it is escaped.
        expect(`${entry.stdout}${entry.stderr}`).toContain('a\\x1b[2K\\u202e.test');
        expectSafe(entry);
      }
    } finally {
      await other.cleanup();
    }
  });

  it('ls, ls -a, stats, their JSON', async () => {
    for (const args of [['ls'], ['ls', '-a'], ['ls', '--json'], ['stats'], ['stats', '--json']]) {
      const entry = await moat(args);
      expect(entry.status, entry.stderr).toBe(0);
      expectSafe(entry);
    }
  });

  it('merge and apply: the confirmation errors name the flagged files, escaped', async () => {
    const refused = await moat(['merge', 'plant']);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('moat: error: the task changes files');
    expectSafe(refused);
    expectSafe(await moat(['merge', 'plant', '--json']));
    // On a terminal (util-linux script gives one) moat asks instead; the question names the same
    // files, escaped. Only the payload's bytes are looked for: the terminal's own CR and
    // readline's cursor moves are in this transcript too.
    const asked = await finish('sh', ['-c', `(sleep 3; printf 'n\\n') | script -qec "${process.execPath} ${MOAT_BIN} merge plant" /dev/null`], {
      cwd: scratch.repo,
      env: scratch.env(),
      timeout: 60_000,
    });
    expect(asked.stdout).toContain('Continue? [y/N]');
    for (const raw of ['\x1b[2K', '\x1b[1A', '\x1b]0;pwned', '\x1b]52', '\x07', '\x7f', '\u009b', '\u202e', '\u200b', '\u{e0041}'])
      expect(asked.stdout, JSON.stringify(raw)).not.toContain(raw);
    expect(FORGED.test(asked.stdout.replaceAll('\r', ''))).toBe(false);
    expectSafe(await moat(['apply', 'plant']));
    // apply lays the files on the checkout; then merge refuses (they are in its way).
    const applied = await moat(['apply', 'plant', '--yes']);
    expect(applied.status, applied.stderr).toBe(0);
    expectSafe(applied);
    const refusedAgain = await moat(['merge', 'plant', '--yes']);
    expect(refusedAgain.status).not.toBe(0);
    expectSafe(refusedAgain);
    gitIn(scratch.repo, 'reset', '-q', '--hard');
    gitIn(scratch.repo, 'clean', '-qfd');
    const merged = await moat(['merge', 'plant', '--yes']);
    expect(merged.status, merged.stderr).toBe(0);
    expectSafe(merged);
  });

  it("exec, down, run, agent and rm: moat's own lines around the program's output", async () => {
    expectSafe(await moat(['exec', 'plant', '--', 'true']));
    expectSafe(await moat(['down', 'plant']));
    // The same files again (in a folder of their own: the merge above brought the first ones to HEAD), no network.
    const files = PLANT.split('\n# network')[0]!.replace('set -e', 'set -e; mkdir again; cd again');
    const run = await moat(['run', '--task', 'runner', '--', 'bash', '-c', files]);
    expect(run.stderr).toContain('task runner finished (exit 0); 1 commit(s)');
    expectSafe(run);
    const agent = await moat(['agent', '--task', 'agent', '-t', 'planter', 'hello']);
    expect(agent.status, agent.stderr).toBe(0);
    // The agent's answer is lines of its own, shown escaped; the summary and git's stat below it are moat's.
    expectSafe(agent);
    expect(agent.stdout).toContain('agent | answer \\x1b[2K');
    expect(agent.stderr).toContain('agent | err \\x1b[2K');
    expect(agent.stdout).toContain('\nagent | moat: FORGED\n');
    // moat's summary comes after everything the agent wrote.
    expect(agent.stderr.slice(agent.stderr.lastIndexOf('err \\x1b'))).toMatch(
      /\nmoat: task agent on moat\/agent: agent exited 0; egress 0 allowed, 0 denied\n/,
    );
    for (const task of ['plant', 'runner', 'agent']) expectSafe(await moat(['rm', '-f', task]));
  }, 600_000);

  it('every command above printed nothing raw (the whole transcript)', async () => {
    expect(printed.length).toBeGreaterThan(25);
    for (const entry of printed) {
      if (entry.command.includes('--raw')) continue;
      for (const text of [entry.stdout, entry.stderr]) expect(firstRaw(text), entry.command).toBeUndefined();
    }
  });
});
