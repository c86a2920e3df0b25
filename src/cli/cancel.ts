import { cancelReason } from '../service/cancel.js';
import type { CliContext } from './main.js';

/**
 * A command the user may cancel: the first Ctrl-C (or TERM) aborts the signal, and the service
 * rolls back what it had started; a second one leaves at once (then `moat gc` collects the rest).
 */
export function cancelOnSignal(cli: CliContext): { signal: AbortSignal } {
  const controller = new AbortController();
  let count = 0;
  // Listens until the command's end: a late Ctrl-C must not kill moat between the work and its report.
  cli.io.onSignal((signal) => {
    count += 1;
    if (count > 1) cli.io.abort(128 + (signal === 'TERM' ? 15 : 2));
    else controller.abort(cancelReason(signal));
  });
  return { signal: controller.signal };
}
