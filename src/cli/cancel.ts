import { cancelReason } from '../service/cancel.js';
import { ExitCode } from '../errors.js';
import type { CliContext } from './main.js';

export interface Cancel {
  signal: AbortSignal;
  /** The user's command runs: its Ctrl-C go to it (exec.ts counts them), none counts here. */
  commandStarted(): void;
  /** The command ended and its work is being brought home: a first Ctrl-C is held, with a note; a second leaves. */
  commandEnded(): void;
}

/**
 * A command the user may cancel: the first Ctrl-C (or TERM) aborts the signal, and the service
 * rolls back what it had started; a second one leaves at once (then `moat gc` collects the rest).
 * A run's own command counts its Ctrl-C itself; after it, the count starts again, so the one that
 * went to the command never makes the next one kill moat in the middle of bringing work home.
 */
export function cancelOnSignal(cli: CliContext): Cancel {
  const { io } = cli;
  const controller = new AbortController();
  let phase: 'cancel' | 'command' | 'finish' = 'cancel';
  let count = 0;
  const leave = (signal: 'INT' | 'TERM') => io.abort(signal === 'TERM' ? ExitCode.terminated : ExitCode.interrupted);
  // Listens until the command's end: a late Ctrl-C must not kill moat between the work and its report.
  io.onSignal((signal) => {
    if (phase === 'command') return;
    count += 1;
    if (count > 1) leave(signal);
    else if (phase === 'cancel') controller.abort(cancelReason(signal));
    else cli.output(false).note("bringing the task's work home first (a second Ctrl-C leaves now; moat sync brings it home later)");
  });
  return {
    signal: controller.signal,
    commandStarted: () => {
      phase = 'command';
      count = 0;
    },
    commandEnded: () => {
      phase = 'finish';
      count = 0;
    },
  };
}
