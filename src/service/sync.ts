import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MoatError } from '../errors.js';
import { WORKSPACE_DIR } from '../domain/sandbox-spec.js';
import type { TaskRecord } from '../domain/task.js';
import { OBJECT_ID } from '../workspace/git.js';
import type { UserRepository } from '../workspace/user-repo.js';
import type { MoatContext } from './context.js';
import { runningContainer, withWorkspaceContainer } from './task-container.js';
import { clearMarkers, killPoint, markDone, pendingMarkers, taskKey } from './pending-sync.js';

/**
 * Runs inside the sandbox, as the sandbox user: snapshots uncommitted work into a commit on a
 * private index (so the agent's own index is untouched) and prints the branch tip and snapshot.
 * The script is a constant; the branch and base are positional arguments, never spliced in.
 */
const SNAPSHOT_SCRIPT = `
set -u
cd ${WORKSPACE_DIR} || exit 3
# The image's own programs (its root is read-only), not what the agent put first on PATH: a git
# wrapper in ~/.local/bin, even a well-meant one, must not answer for the snapshot.
PATH=/usr/local/bin:/usr/bin:/bin
g() { timeout -s KILL 120 git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c gc.auto=0 -c maintenance.auto=false "$@"; }
# A missing branch prints nothing; a failure (say, no fork left after a fork bomb) must not pass
# for one, or the host would think the task has no commits: fail, and a fresh helper retries.
# The tip's tree comes in the same call: every process counts under gVisor, where each costs tens of ms.
tip=$(g for-each-ref --format="%(objectname) %(tree)" "refs/heads/$1") || exit 5
tiptree=\${tip#* }
tip=\${tip%% *}
# Best effort: the agent's own config (filters, attributes) can break "git add"; commits still sync.
# "snap" says whether the snapshot was taken to the end (1), found nothing uncommitted or not:
# a snapshot that failed quietly must never read as "no uncommitted work" (run would remove it).
wip=""
nbig=0
snap=0
big=/dev/null
idx=$(mktemp /tmp/.moat-index.XXXXXX) && {
  export GIT_INDEX_FILE="$idx"
  # Files over 50 MiB stay out of the snapshot (they would land in the user's object store);
  # they are counted so the review can say so. Their list is written only when there is one.
  found=$(find . -path ./.git -prune -o -type f -size +50M -print) &&
  { [ -z "$found" ] || { big=$(mktemp /tmp/.moat-big.XXXXXX) && printf '%s\\n' "$found" | sed -e 's/^\\.//' -e 's/[][*?\\!#]/\\\\&/g' > "$big" && nbig=$(($(wc -l < "$big"))); }; } &&
  # A tree equal to the tip's means nothing is uncommitted: no snapshot to carry.
  g read-tree "\${tip:-$2}" && g -c core.excludesFile="$big" add -A . && tree=$(g write-tree) && { head=$tiptree; [ -n "$head" ] || head=$(g rev-parse "\${tip:-$2}^{tree}"); } && {
    if [ "$tree" = "$head" ]; then snap=1
    else
      wip=$(GIT_AUTHOR_NAME=moat GIT_AUTHOR_EMAIL=moat@moat.invalid GIT_COMMITTER_NAME=moat GIT_COMMITTER_EMAIL=moat@moat.invalid g commit-tree "$tree" -p "\${tip:-$2}" -m "moat: uncommitted work") && g update-ref refs/moat/wip "$wip" && snap=1 || wip=""
    fi
  }
  if [ "$big" = /dev/null ]; then rm -f "$idx"; else rm -f "$idx" "$big"; fi
} >/dev/null 2>&1
case "$nbig" in ''|*[!0-9]*) nbig=0; snap=0 ;; esac
echo "$tip $wip $nbig $snap"
# Nothing new at all: git refuses an empty bundle, and there is nothing to carry.
if [ -z "$wip" ] && [ "$tip" = "$2" ]; then exit 0; fi
refs=""
[ -n "$tip" ] && refs="refs/heads/$1"
[ -n "$wip" ] && refs="$refs refs/moat/wip"
[ -n "$refs" ] || exit 4
# The bundle follows the header line on stdout, so one exec carries everything home.
timeout -s KILL 600 git -c core.hooksPath=/dev/null bundle create --quiet - $refs "^$2"
`;

/**
 * Runs the user's command, then the snapshot, in one exec, and leaves the snapshot in a file of
 * the workspace's .git, which the host reads from the mount's source (read-confined.ts): a second
 * exec costs more than the snapshot itself. The shell catches the signals meant for the command (its own process group's),
 * so an interrupted command is still followed by the snapshot; the status is the command's.
 * In the background ($5 = 1, the warm server's exec) the snapshot is detached from the exec's
 * output, so the exec, and the caller's status, end with the command while the snapshot runs on;
 * it then always leaves the file, empty when it failed (and "$out.forked" says it was started).
 * When the file is missing or empty (a full
 * disk, a fork bomb, a kill), the caller reads the work the usual way.
 */
const COMMAND_THEN_SNAPSHOT = `
out=$1; branch=$2; base=$3; pidfile=$4; background=$5; shift 5
[ -z "$pidfile" ] || echo $$ > "$pidfile"
trap : INT TERM HUP QUIT
"$@"
rc=$?
snapshot() {
  (set -- "$branch" "$base"; ${SNAPSHOT_SCRIPT}) > "$out.part" 2>/dev/null && mv -f "$out.part" "$out" && return
  rm -f "$out.part"
  [ "$background" != 1 ] || : > "$out"
}
# The command's pid file goes, and files of earlier execs, which were read within moments (one of
# an exec still being read is never that old; at worst a reader falls back to reading the
# workspace). Late signals for the command's group no longer concern these.
tidy() {
  trap '' INT TERM HUP QUIT
  [ -z "$pidfile" ] || rm -f "$pidfile"
  find ${WORKSPACE_DIR}/.git -maxdepth 1 -name 'moat-work-*' -mmin +2 -exec rm -f {} +
}
if [ "$background" = 1 ]; then
  # A shell that cannot fork (a fork bomb holds the pids limit) stops right here; the file after
  # the fork says the snapshot is coming, so the host does not wait for one that never will.
  (tidy; snapshot) </dev/null >/dev/null 2>&1 &
  : > "$out.forked"
else
  snapshot
  (tidy) </dev/null >/dev/null 2>&1 &
fi
exit $rc
`;

export function commandThenSnapshot(
  cmd: string[],
  record: Pick<TaskRecord, 'branch' | 'baseCommit'>,
  outFile: string,
  pidFile = '',
  options: { background?: boolean } = {},
): string[] {
  return ['sh', '-c', COMMAND_THEN_SNAPSHOT, 'moat-run', outFile, record.branch, record.baseCommit, pidFile, options.background ? '1' : '', ...cmd];
}

export const MAX_BUNDLE_BYTES = 2 * 1024 ** 3;

export interface SyncResult {
  task: string;
  branch: string;
  /** Tip of the task branch in the user's repository after the sync. */
  tip: string;
  /** Commits on the task branch that are not in its base. */
  commits: number;
  /** Snapshot of committed + uncommitted work, at refs/moat/wip/<task>. */
  wip?: string;
  /** Set when the user moved or deleted the branch: the task's work is parked at refs/moat/incoming/<task>. */
  parkedAt?: string;
  warning?: string;
  /** Uncommitted files over 50 MiB left out of the snapshot. */
  skippedLarge?: number;
  /**
   * The sandbox took the snapshot of uncommitted work to the end (so no `wip` means nothing
   * uncommitted). False when it failed (a full /tmp, a file git cannot read, a filter): the
   * uncommitted work is then unknown, and only the workspace holds it.
   */
  snapshotTaken?: boolean;
  /** The commit count could not be read (`commits` is then 0, which says nothing). */
  commitsUnknown?: boolean;
}

/** What reading a workspace gave: the branch tip, the snapshot of uncommitted work, the bundle. */
type Snapshot = { error: string; final?: boolean } | { tip: string; wip?: string; bundle?: Buffer; skippedLarge: number; snapshotTaken: boolean };

export function wipRef(task: string): string {
  return `refs/moat/wip/${task}`;
}

export function incomingRef(task: string): string {
  return `refs/moat/incoming/${task}`;
}

/**
 * Brings a task's commits home. The sandbox writes a git bundle to its stdout; moat stores it in
 * a host-owned file and fetches from it into the user's repository. Host git never opens the
 * sandbox's repository, so nothing planted there (hooks, config, links) can act on the host.
 * A sync that reads the workspace afresh also brings home the work of every exec whose command
 * has ended, and clears their "sync pending" markers (pending-sync.ts); with `captured` work it
 * clears only the `markers` given (the execs that work was taken after).
 */
export async function syncTask(
  ctx: MoatContext,
  repo: UserRepository,
  record: TaskRecord,
  options: { afterRead?: () => Promise<unknown>; captured?: Buffer; markers?: string[]; background?: boolean } = {},
): Promise<SyncResult> {
  // The warm server's sync of an earlier exec goes first (it is the one running this otherwise).
  if (!options.background) await ctx.syncs?.wait(taskKey(record));
  const engine = await ctx.engine();
  const user = `${record.user.uid}:${record.user.gid}`;
  const bundleFile = join(ctx.store.taskDir(record.repoKey, record.name), `sync-${process.pid}-${randomBytes(4).toString('hex')}.bundle`);
  const due = (await pendingMarkers(ctx.store, record)).filter((marker) => marker.due).map((marker) => marker.id);

  const readWork = async (id: string): Promise<Snapshot> => {
    const run = await engine.execCapture(
      id,
      { cmd: ['sh', '-c', SNAPSHOT_SCRIPT, 'moat-sync', record.branch, record.baseCommit], user, workdir: WORKSPACE_DIR },
      MAX_BUNDLE_BYTES,
    );
    if (run.exitCode !== 0) return { error: run.stderr.trim().split('\n').pop() || `exit ${run.exitCode}` };
    return parseSnapshot(run.stdout, record);
  };
  const captured = options.captured ? parseSnapshot(options.captured, record) : undefined;
  // A workspace that went with its sandbox (a pod's, once the pod is gone): what the last sync
  // brought home is all of the task's work there is, and nothing is left to read.
  if (!captured && !engine.capabilities.workspaceOutlivesSandbox && !(await runningContainer(engine, record))) return workAtHome(repo, record);
  const fresh = !captured || 'error' in captured;
  let snapshot = captured && !('error' in captured) ? captured : await withWorkspaceContainer(ctx, record, readWork);
  // A wedged sandbox (fork bomb, full /tmp, killed processes) must not keep its commits from
  // coming home: read the same workspace from a fresh helper container instead.
  if ('error' in snapshot && !snapshot.final && record.containerId && engine.capabilities.workspaceOutlivesSandbox)
    snapshot = await withWorkspaceContainer(ctx, record, readWork, { helper: true });
  killPoint(ctx.env, 'sync-after-read');
  // Once the work is read, the caller may tear the sandbox down while it is brought home.
  const afterRead = 'error' in snapshot ? Promise.resolve() : (options.afterRead?.() ?? Promise.resolve());
  try {
    const result = await bringHome(ctx, repo, record, snapshot, bundleFile);
    // Home (or parked beside the user's branch), or nothing a second read would change.
    if (!('error' in snapshot) || snapshot.final) await clearMarkers(ctx.store, record, [...(fresh ? due : []), ...(options.markers ?? [])]);
    // Not read: the given execs' work is due, so the next command on the task reads it first (a
    // marker left `running` by this live process would be due only once the process ends).
    else await Promise.all((options.markers ?? []).map((marker) => markDone(ctx.store, record, marker)));
    return result;
  } finally {
    await afterRead;
  }
}

/** The task's work as it is at home: its branch, and the snapshot of uncommitted work the last sync took. */
async function workAtHome(repo: UserRepository, record: TaskRecord): Promise<SyncResult> {
  const tip = (await repo.refValue(`refs/heads/${record.branch}`)) ?? record.syncedTip;
  const wip = await repo.refValue(wipRef(record.name));
  const result: SyncResult = { task: record.name, branch: record.branch, tip, commits: 0, ...(wip ? { wip } : {}), snapshotTaken: true };
  try {
    result.commits = await repo.countCommits(record.baseCommit, tip);
  } catch {
    result.commitsUnknown = true;
  }
  return result;
}

/** Before a command on the task: the work of earlier execs that is not home yet comes first. */
export async function settlePendingSync(ctx: MoatContext, repo: UserRepository, record: TaskRecord): Promise<TaskRecord> {
  await ctx.syncs?.wait(taskKey(record));
  const markers = await pendingMarkers(ctx.store, record);
  if (!markers.some((marker) => marker.due)) return record;
  // The record may have moved on while this command waited (the sync under way saved it).
  const current = (await ctx.store.get(record.repoKey, record.name)) ?? record;
  await syncTask(ctx, repo, current);
  return current;
}

/**
 * The snapshot's output: a line "tip wip skipped taken", then the bundle. All of it is the
 * sandbox's word, so the line is read strictly: anything odd is an error (the task is kept whole).
 * A line of three fields (a snapshot file left by an older moat) says nothing of "taken": not taken.
 */
function parseSnapshot(output: Buffer, record: TaskRecord): Snapshot {
  const newline = output.indexOf(0x0a);
  if (newline < 0) return { error: 'the sandbox gave no snapshot' };
  const fields = output.subarray(0, newline).toString('utf8').split(' ');
  const [tip = '', wip = '', big = '', taken = '0'] = fields;
  if ((tip && !OBJECT_ID.test(tip)) || (wip && !OBJECT_ID.test(wip)))
    return { error: 'the sandbox answered with something that is not a commit id', final: true };
  if (fields.length < 3 || fields.length > 4 || !/^[0-9]{1,9}$/.test(big) || !/^[01]$/.test(taken))
    return { error: 'the sandbox answered with a malformed snapshot line', final: true };
  if (!tip && !wip) return { error: `the task's repository has no ${record.branch} branch`, final: true };
  const bundle = output.subarray(newline + 1);
  // The script sends a bundle whenever there is anything new (a tip past the base, a snapshot): an
  // answer without one was cut short (an engine's stream dropped after the line). Read again.
  if (bundle.length === 0 && (wip || tip !== record.baseCommit)) return { error: 'the answer broke off before its bundle' };
  return { tip, wip: wip || undefined, bundle: bundle.length > 0 ? bundle : undefined, skippedLarge: Number(big), snapshotTaken: taken === '1' };
}

async function bringHome(ctx: MoatContext, repo: UserRepository, record: TaskRecord, snapshot: Snapshot, bundleFile: string): Promise<SyncResult> {
  if ('error' in snapshot) {
    const current = (await repo.refValue(`refs/heads/${record.branch}`)) ?? record.syncedTip;
    return {
      task: record.name,
      branch: record.branch,
      tip: current,
      commits: await repo.countCommits(record.baseCommit, current).catch(() => 0),
      commitsUnknown: true,
      warning: `could not read the task's repository (${snapshot.error}); commits synced earlier are safe on ${record.branch}`,
    };
  }

  try {
    if (!snapshot.wip) await repo.deleteRef(wipRef(record.name));
    if (snapshot.bundle) await importBundle(repo, record, bundleFile, snapshot.bundle, snapshot.tip);
    killPoint(ctx.env, 'sync-after-fetch');
  } catch (error) {
    throw new MoatError('E_SYNC_FAILED', `could not bring ${record.name}'s commits home: ${(error as Error).message}`, {
      hint: "the task's work is still in its workspace; run `moat sync` again after fixing the cause",
      cause: error,
    });
  } finally {
    await rm(bundleFile, { force: true });
  }

  const result: SyncResult = {
    task: record.name,
    branch: record.branch,
    tip: record.syncedTip,
    commits: 0,
    wip: snapshot.wip,
    skippedLarge: snapshot.skippedLarge,
    snapshotTaken: snapshot.snapshotTaken,
  };
  if (snapshot.tip) {
    const branchRef = `refs/heads/${record.branch}`;
    const current = await repo.refValue(branchRef);
    if (current === snapshot.tip) {
      result.tip = current;
    } else if (current === record.syncedTip && (await repo.compareAndSetRef(branchRef, snapshot.tip, current, `moat: sync task ${record.name}`))) {
      result.tip = snapshot.tip;
    } else {
      // The user moved or deleted the branch since the last sync: never overwrite their choice.
      result.tip = current ?? record.syncedTip;
      result.parkedAt = incomingRef(record.name);
      result.warning = `${record.branch} was ${current ? 'moved' : 'deleted'} outside moat; the task's latest work is at ${incomingRef(record.name)}`;
    }
    if (!result.parkedAt) {
      await repo.deleteRef(incomingRef(record.name));
      record.syncedTip = result.tip;
      await ctx.store.save(record);
    }
  }
  // A git failure here is "not read", never "no commits": run would delete the branch on a 0.
  try {
    result.commits = await repo.countCommits(record.baseCommit, result.tip);
  } catch {
    result.commitsUnknown = true;
  }
  return result;
}

async function importBundle(repo: UserRepository, record: TaskRecord, bundleFile: string, bundle: Buffer, tip: string): Promise<void> {
  await writeFile(bundleFile, bundle, { mode: 0o600 });
  // git leaves out of a bundle the refs whose commit is already in the base (no new commits,
  // or a branch reset backwards); those need no transfer, the user's repository has them.
  const heads = await repo.bundleHeads(bundleFile);
  const specs: string[] = [];
  if (heads.has(`refs/heads/${record.branch}`)) specs.push(`+refs/heads/${record.branch}:${incomingRef(record.name)}`);
  else if (tip && !(await repo.refValue(tip))) throw new Error(`commit ${tip} is missing from the bundle`);
  if (heads.has('refs/moat/wip')) specs.push(`+refs/moat/wip:${wipRef(record.name)}`);
  if (specs.length > 0) await repo.importBundle(bundleFile, specs);
}
