/**
 * The words that run `cmd` in `workdir` with `env` added, through env(1), where an exec has no
 * working directory or environment of its own (Kubernetes' exec) or where the command goes down
 * a shell waiting in the sandbox (an exec opened ahead).
 *
 * `--` comes before the pairs: GNU env ends its options there, whereas after a NAME=VALUE it would
 * take `--` for the command's name (every command given an environment failed with 127). A command
 * whose name holds an `=` would be read as one more pair, so sh's exec runs it by name instead.
 */
export function envCommand(cmd: readonly string[], workdir: string | undefined, env: Record<string, string> | undefined): string[] {
  const pairs = Object.entries(env ?? {}).map(([key, value]) => `${key}=${value}`);
  const named = cmd[0]?.includes('=') ? ['/bin/sh', '-c', 'exec "$0" "$@"', ...cmd] : cmd;
  return ['/usr/bin/env', ...(workdir ? ['-C', workdir] : []), '--', ...pairs, ...named];
}
