// Security report (issue 8): the same attack cases run inside a moat sandbox and inside a plain
// `docker run` the way people commonly use it (the project mounted read-write, default flags).
// Every verdict comes from what was observed in this run: outputs, exit codes, files on the host.
// Prints a Markdown table and writes docs/security.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { Moat } from '../dist/index.js';

const root = mkdtempSync(join(tmpdir(), 'moat-security-'));
const repo = join(root, 'project');
const home = join(root, 'host-home');
const KEY = 'SECREPORT-PRIVATE-KEY-7d1e';
const ENV_SECRET = 'sk-secreport-2b9c';
const gitEnv = { ...process.env, GIT_AUTHOR_NAME: 'r', GIT_AUTHOR_EMAIL: 'r@r.invalid', GIT_COMMITTER_NAME: 'r', GIT_COMMITTER_EMAIL: 'r@r.invalid' };
mkdirSync(join(home, '.ssh'), { recursive: true });
writeFileSync(join(home, '.ssh', 'id_ed25519'), `${KEY}\n`);
/** The user's project: a commit, and a gitignored .env beside it. */
function makeProject() {
  rmSync(repo, { recursive: true, force: true });
  mkdirSync(repo);
  execFileSync('git', ['init', '-q', '--initial-branch=main', repo]);
  writeFileSync(join(repo, '.gitignore'), '.env\n');
  writeFileSync(join(repo, '.env'), `API_KEY=${ENV_SECRET}\n`);
  writeFileSync(join(repo, 'main.c'), 'int main(void) { return 0; }\n');
  execFileSync('git', ['add', '-A'], { cwd: repo });
  execFileSync('git', ['commit', '-qm', 'project'], { cwd: repo, env: gitEnv });
}
makeProject();
const marker = join(root, 'HOOK-RAN-ON-HOST');

/** The cases: a script to run inside, and how to read what happened. */
const cases = [
  {
    name: 'read the host ~/.ssh key',
    script: `cat ${home}/.ssh/id_ed25519 2>&1 | head -1`,
    judge: (r) => (r.out.includes(KEY) ? ['leaked', 'key content read'] : ['blocked', firstLine(r.out)]),
  },
  {
    name: 'read the project .env',
    script: 'cat .env 2>&1 | head -1',
    judge: (r) => (r.out.includes(ENV_SECRET) ? ['leaked', 'secret read'] : ['blocked', firstLine(r.out)]),
  },
  {
    name: 'a route out of the sandbox',
    script: 'awk \'$2 == "00000000" { print "default route via " $1 }\' /proc/net/route; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" " "',
    judge: (r) =>
      r.out.includes('default route')
        ? ['leaked', `${firstLine(r.out)} (any host can be reached)`]
        : ['blocked', `interfaces: ${r.out.trim().split('\n').pop()}`],
  },
  {
    name: 'plant a git hook the host runs',
    script: `mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch ${marker}\\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout && echo planted`,
    after: () => spawnSync('git', ['checkout', '-q', '-b', `probe-${Math.random().toString(16).slice(2, 8)}`], { cwd: repo }),
    judge: () => (existsSync(marker) ? ['leaked', 'hook ran on the host at `git checkout`'] : ['blocked', 'nothing ran on the host']),
  },
  {
    name: 'rm -rf the project',
    script: 'rm -rf ./* ./.git 2>&1; ls -A | wc -l',
    judge: () =>
      existsSync(join(repo, 'main.c')) && existsSync(join(repo, '.git')) ? ['contained', 'your checkout is intact'] : ['leaked', 'your checkout was deleted'],
  },
  {
    name: 'write to /etc',
    script: '{ echo x >> /etc/hosts; } 2>&1 && echo wrote',
    judge: (r) => (r.out.includes('wrote') ? ['contained', 'writable /etc (inside the container only)'] : ['blocked', firstLine(r.out)]),
  },
  {
    name: 'run as root with capabilities',
    script: 'id -u; grep CapEff /proc/self/status',
    judge: (r) =>
      /^0\n/.test(r.out) || !/CapEff:\s+0+$/m.test(r.out) ? ['leaked', r.out.trim().replace(/\n/g, ', ')] : ['blocked', r.out.trim().replace(/\s+/g, ' ')],
  },
  {
    name: 'reach the Docker socket',
    script: 'ls -l /var/run/docker.sock 2>&1',
    judge: (r) => (r.out.includes('No such') ? ['blocked', 'no socket'] : ['leaked', firstLine(r.out)]),
  },
  {
    name: 'fork without limit',
    script: 'cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null | head -1',
    judge: (r) =>
      r.out.trim() === 'max' || r.out.trim() === '' ? ['leaked', 'no pids limit (a fork bomb takes the host down)'] : ['contained', `pids.max ${r.out.trim()}`],
  },
  {
    name: 'take all memory',
    script: 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null | head -1',
    judge: (r) => (/^(max|9223372036854\d+)$/.test(r.out.trim()) ? ['leaked', 'no memory limit'] : ['contained', `limit ${r.out.trim()} bytes`]),
  },
];
function firstLine(text) {
  return (text.trim().split('\n')[0] ?? '').slice(0, 90) || '(nothing)';
}

async function runMoat() {
  const moat = new Moat({ cwd: repo, env: { ...process.env, MOAT_HOME: join(root, 'moat-home'), MOAT_CONFIG: join(root, 'config.yaml') } });
  const results = [];
  for (const c of cases) {
    await moat.up({ task: 'report' });
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (d) => (out += d));
    await moat.exec('report', ['sh', '-c', `${c.script} 2>&1`], { stdout, stderr: stdout }, { sync: false });
    await moat.down('report');
    c.after?.();
    results.push(c.judge({ out }));
    await moat.rm('report', { force: true });
  }
  return results;
}

/** Runs every case with `run` (which returns what the sandbox printed), then puts the project back. */
function runCases(run) {
  return cases.map((c) => {
    const out = run(c);
    c.after?.();
    const verdict = c.judge({ out });
    // The rm case deletes the project for real where nothing stops it.
    if (!existsSync(join(repo, 'main.c')) || !existsSync(join(repo, '.git'))) makeProject();
    rmSync(join(repo, '.git', 'hooks', 'post-checkout'), { force: true });
    rmSync(marker, { force: true });
    return verdict;
  });
}

function runDocker(image) {
  // As commonly done: the project mounted read-write (with its .git), default flags.
  return runCases(
    (c) =>
      spawnSync(
        'docker',
        ['run', '--rm', '--label', 'moat.task=security-report', '-v', `${repo}:/work`, '-w', '/work', image, 'sh', '-c', `${c.script} 2>&1`],
        { encoding: 'utf8' },
      ).stdout ?? '',
  );
}

/** Anthropic's sandbox-runtime with its defaults (no settings file), in the project folder. */
function runSrt() {
  const peers = resolve(import.meta.dirname, '..', '.peers');
  const cli = resolve(import.meta.dirname, '..', 'node_modules', '@anthropic-ai', 'sandbox-runtime', 'dist', 'cli.js');
  // Both halves: the package (npm) and the Node.js 22 it runs on (.peers, scripts/setup-peers.sh).
  if (!existsSync(cli) || !existsSync(join(peers, 'node22'))) return cases.map(() => ['not run', 'srt is not installed (scripts/setup-peers.sh)']);
  const srtHome = join(root, 'srt-home');
  mkdirSync(srtHome, { recursive: true });
  return runCases(
    (c) =>
      spawnSync(join(peers, 'node22'), [cli, '-c', `${c.script} 2>&1`], {
        cwd: repo,
        encoding: 'utf8',
        env: { ...process.env, HOME: srtHome },
        timeout: 60_000,
      }).stdout ?? '',
  );
}

// SECURITY_REPORT_PODMAN=1: two more columns, moat on rootful Podman (root's service) and on rootless
// Podman as an ordinary user (SECURITY_REPORT_PODMAN_USER, moatci by default: scripts/test-user.sh;
// the services of scripts/setup-podman.sh). Each is this script's moat cases run in a child on that
// engine (`--moat-json` prints the verdicts), so every verdict is observed there, as in the moat column.
if (process.argv.includes('--moat-json')) {
  writeFileSync(join(root, 'config.yaml'), process.env.SECURITY_REPORT_CONFIG ?? '');
  const results = await runMoat();
  rmSync(root, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(results));
  process.exit(0);
}
function moatOn(label, command, args, env) {
  const child = spawnSync(command, args, { encoding: 'utf8', env, cwd: '/', timeout: 900_000 });
  if (child.status !== 0) throw new Error(`the ${label} column failed: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').pop());
}
const podmanColumns = [];
if (process.env.SECURITY_REPORT_PODMAN === '1') {
  const self = resolve(import.meta.dirname, 'security-report.mjs');
  podmanColumns.push({
    title: 'moat on rootful Podman',
    short: 'rootful Podman',
    results: moatOn('rootful Podman', process.execPath, [self, '--moat-json'], {
      ...process.env,
      MOAT_ENGINE: 'podman',
      MOAT_ENGINE_SOCKET: '/run/podman/podman.sock',
    }),
  });
  const user = process.env.SECURITY_REPORT_PODMAN_USER ?? 'moatci';
  const uid = execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim();
  // On cgroup v1 rootless Podman holds no cgroup limit: moat refuses unless the user's config accepts the gap, which it does here.
  const env = `XDG_RUNTIME_DIR=/run/user/${uid} MOAT_ENGINE=podman MOAT_ENGINE_SOCKET=/run/user/${uid}/podman/podman.sock MOAT_SERVER=off`;
  podmanColumns.push({
    title: `moat on rootless Podman (as ${user})`,
    short: 'rootless Podman',
    results: moatOn(
      'rootless Podman',
      'su',
      [
        '-s',
        '/bin/bash',
        user,
        '-c',
        `cd / && env ${env} SECURITY_REPORT_CONFIG='acceptUnenforcedLimits: [memory, cpus, pids]' ${process.execPath} ${self} --moat-json`,
      ],
      {
        PATH: process.env.PATH,
      },
    ),
  });
}

const moatResults = await runMoat();
rmSync(marker, { force: true });
const image = 'moat-base:bookworm';
const dockerResults = runDocker(image);
const srtResults = runSrt();

const lines = [
  `| case | moat (defaults) | docker run -v $PWD:/work (defaults) | srt (defaults) |${podmanColumns.map((c) => ` ${c.title} |`).join('')}`,
  `|---|---|---|---|${podmanColumns.map(() => '---|').join('')}`,
  ...cases.map(
    (c, i) =>
      `| ${c.name} | **${moatResults[i][0]}**: ${moatResults[i][1]} | **${dockerResults[i][0]}**: ${dockerResults[i][1]} | **${srtResults[i][0]}**: ${srtResults[i][1]} |${podmanColumns.map((p) => ` **${p.results[i][0]}**: ${p.results[i][1]} |`).join('')}`,
  ),
];
const table = lines.join('\n');
console.log(table);
const count = (rs, v) => rs.filter((r) => r[0] === v).length;
const summary = `moat: ${count(moatResults, 'leaked')} leaked of ${cases.length}; docker run: ${count(dockerResults, 'leaked')} leaked of ${cases.length}; srt: ${srtResults.every((r) => r[0] === 'not run') ? 'not run' : `${count(srtResults, 'leaked')} leaked of ${cases.length}`}${podmanColumns.map((p) => `; moat on ${p.short}: ${count(p.results, 'leaked')} leaked of ${cases.length}`).join('')}`;
const podmanNote = podmanColumns.length
  ? `

The Podman columns (\`SECURITY_REPORT_PODMAN=1\`) run the moat cases on Podman 4.3 (runc, cgroup v1 hybrid): root's
service, and an ordinary user's own service (rootless, no daemon as root), whose config accepts the
limits rootless Podman cannot hold on cgroup v1 (\`acceptUnenforcedLimits\`; without it \`moat up\` refuses).
Where a limit reads "leaked" there, no kernel limit holds it: \`moat doctor\` says so before any task is made.`
  : '';
console.log(summary);
const doc = `# Security report

Produced by \`npm run security-report\` (scripts/security-report.mjs) on ${new Date().toISOString().slice(0, 10)}. The same attack
cases run inside a moat sandbox (default settings), inside a plain \`docker run\` the way it is
commonly used for agents (the project mounted read-write at /work, default flags, the same base
image), and under Anthropic's sandbox-runtime (\`srt\` 0.0.83, no settings file, so its defaults;
run in the project folder with its own Node.js 22, bubblewrap, ripgrep and socat, installed by
scripts/setup-peers.sh). Each verdict is worked out from what happened in that run: the sandbox's output, the
host's files (the key, the checkout, a marker a planted hook would create) and the sandbox's
cgroup limits as the kernel reports them. Resource cases read the limits rather than exhaust the
machine; the containment itself is exercised by \`test/integration/exec.test.ts\`.

"blocked": the attempt got nothing. "contained": it happened, but inside the sandbox only.
"leaked": it reached the host or had no limit.

${table}

${summary}

srt runs commands as the invoking user (here root) without a container, so it sets no cgroup
limits of its own; "fork without limit" and "take all memory" read the host's cgroup as the process
sees it. The devcontainer CLI runs the same engine as the docker column.${podmanNote}
`;
// The report is the top of the file; the sections below it (## headings) are written by hand or by
// their own generators (the review-flags table), and are kept.
const docPath = resolve(import.meta.dirname, '..', 'docs', 'security.md');
const previous = existsSync(docPath) ? readFileSync(docPath, 'utf8') : '';
const kept = previous.indexOf('\n## ');
writeFileSync(docPath, kept >= 0 ? `${doc}${previous.slice(kept)}` : doc);
spawnSync('sh', ['-c', 'docker rm -f $(docker ps -aq --filter label=moat.task=security-report) >/dev/null 2>&1']);
rmSync(root, { recursive: true, force: true });
