// The repository a benchmark runs moat in: one committed file, in a fresh folder under `root`.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function benchRepo(root) {
  const repo = join(root, 'repo');
  mkdirSync(repo);
  const gitEnv = { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b.invalid', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b.invalid' };
  execFileSync('git', ['init', '-q', repo]);
  writeFileSync(join(repo, 'file.txt'), 'x\n');
  execFileSync('git', ['add', '-A'], { cwd: repo });
  execFileSync('git', ['commit', '-qm', 'init'], { cwd: repo, env: gitEnv });
  return repo;
}

/**
 * A benchmark's own moat: a folder named `prefix`, its repository (benchRepo), a MOAT_HOME and
 * MOAT_CONFIG inside it (with `extra(root)` on top of this process's environment), and, when the process
 * exits, everything removed: `first` (the warm servers, say), the home's containers by label, the
 * volumes mounted under the folder, the folder.
 */
export async function benchHome(prefix, extra = () => ({}), first = () => undefined) {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const repo = benchRepo(root);
  const env = { ...process.env, MOAT_HOME: join(root, 'home'), MOAT_CONFIG: join(root, 'config.yaml'), ...extra(root) };
  const { TaskStore } = await import('../dist/state/task-store.js');
  const homeKey = new TaskStore(env.MOAT_HOME).homeKey;
  process.on('exit', () => {
    first(root);
    spawnSync('sh', ['-c', `docker rm -f $(docker ps -aq --filter label=moat.home=${homeKey}) >/dev/null 2>&1`]);
    spawnSync('sh', ['-c', `for m in $(grep -o '${root}/[^ ]*/volume' /proc/self/mountinfo); do umount -l "$m"; done`]);
    rmSync(root, { recursive: true, force: true });
  });
  return { root, repo, env, homeKey };
}
