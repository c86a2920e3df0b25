/**
 * The shell an exec opened ahead runs (kubernetes-exec-ahead.ts, podman-exec-ahead.ts): it waits
 * for one command, whose words the host sends framed on its stdin, then the command's stdin.
 */

/**
 * Unframes fd 3 into the command's stdin (frames: "length\n" then the bytes, {@link frame}; an empty
 * one is the end) and runs the command in a session of its own (setsid -w: its own process group,
 * its status kept should setsid have to fork). Shared by kubernetes-exec.ts's framed stdin and
 * {@link WAIT_SCRIPT}.
 */
export const UNFRAME_LOOP =
  '{ while IFS= read -r n && [ "$n" -gt 0 ] 2>/dev/null; do head -c "$n" || exit 1; done <&3 2>/dev/null & } | /usr/bin/setsid -w "$@" 3<&-';

/**
 * Says it runs ("R" on stdout: the proof that a command runs in the sandbox, as a pod's start
 * needs one), reads the command's words (shell-quoted by the host: "length\n" then the words; the
 * first word is the status mark, exec-ahead-status.ts), then unframes the rest of stdin into it
 * as kubernetes-exec.ts's framing does (the same script after the first frame). When the command
 * ends, the shell writes its status after the mark on stdout and on stderr, then ends with it. 125
 * when no command came (the stream closed while waiting).
 */
export const WAIT_SCRIPT =
  'printf R; exec 3<&0; IFS= read -r n <&3 && [ "$n" -gt 0 ] 2>/dev/null && words=$(head -c "$n" <&3) && eval "set -- $words" || exit 125; ' +
  'mark=$1; shift; ' +
  `${UNFRAME_LOOP}; ` +
  's=$?; printf "%s%d\\n" "$mark" "$s"; printf "%s%d\\n" "$mark" "$s" >&2; exit "$s"';

/** One frame of the stdin these scripts read: "length\n" then the bytes; an empty one is stdin's end. */
export function frame(data: Buffer | string): Buffer {
  // Readable.from([text]) yields strings: framed by their bytes, not their characters.
  const chunk = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return Buffer.concat([Buffer.from(`${chunk.length}\n`), chunk]);
}

/** What the first frame a waiting shell reads says: the status mark, then the command, as shell words. */
export function commandWords(mark: string, cmd: readonly string[]): string {
  return [mark, ...cmd].map(shellWord).join(' ');
}

/** One word for sh: single-quoted, a quote inside as '\''. */
export function shellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
