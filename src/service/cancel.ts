import { isMoatError, MoatError } from '../errors.js';

/** The signals a user cancels a command with: Ctrl-C (INT) and TERM. */
export type CancelSignal = 'INT' | 'TERM';

/** The reason to abort a command's AbortController with, when the user sent `signal`. */
export function cancelReason(signal: CancelSignal): MoatError {
  return new MoatError(signal === 'TERM' ? 'E_TERMINATED' : 'E_INTERRUPTED', `cancelled (SIG${signal})`, { details: { signal: `SIG${signal}` } });
}

/** Throws the cancel once the signal fired; called between the steps of a command. */
export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

/**
 * Waits for a step that leaves nothing to undo (a template build, a devcontainer build, a secret
 * command); a cancel ends the wait at once instead of after the step.
 */
export function untilCancelled<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * What a cancelled command reports after its rollback: one line, the exit status of the signal
 * (130 for Ctrl-C). A rollback step that failed is said, with the command that finishes the job.
 */
export function cancelledError(signal: AbortSignal, what: string, cleanedUp: boolean): MoatError {
  const reason: unknown = signal.reason;
  const term = isMoatError(reason) && reason.code === 'E_TERMINATED';
  const name = term ? 'SIGTERM' : 'SIGINT';
  const message = cleanedUp
    ? `${what} cancelled (${name}); what it had started was removed`
    : `${what} cancelled (${name}); some of what it had started could not be removed`;
  return new MoatError(term ? 'E_TERMINATED' : 'E_INTERRUPTED', message, {
    ...(cleanedUp ? {} : { hint: 'moat gc removes it' }),
    details: { signal: name, cleanedUp },
  });
}

/** Is this the error cancelledError made (the rollback already ran and is accounted for)? */
export function isCancelledError(error: unknown): boolean {
  return isMoatError(error) && (error.code === 'E_INTERRUPTED' || error.code === 'E_TERMINATED') && typeof error.details?.cleanedUp === 'boolean';
}
