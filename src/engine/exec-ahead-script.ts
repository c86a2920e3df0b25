/**
 * The shell an exec opened ahead runs (kubernetes-exec-ahead.ts, podman-exec-ahead.ts): it waits
 * for one command, whose words the host sends framed on its stdin, then the command's stdin.
 */

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
  '{ while IFS= read -r n && [ "$n" -gt 0 ] 2>/dev/null; do head -c "$n" || exit 1; done <&3 2>/dev/null & } | /usr/bin/setsid -w "$@" 3<&-; ' +
  's=$?; printf "%s%d\\n" "$mark" "$s"; printf "%s%d\\n" "$mark" "$s" >&2; exit "$s"';

/** One word for sh: single-quoted, a quote inside as '\''. */
export function shellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
