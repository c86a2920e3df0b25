import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon built from native/fdpass.c. */
export interface FdPass {
  /** One byte and one descriptor from a unix socket, without blocking: the descriptor of a loopback TCP listener, or -errno. */
  receiveListener(fd: number): number;
  /** Sends one byte and the descriptors (tests play a hostile sandbox with it). 0 or -errno. */
  sendDescriptors(fd: number, fds: number[]): number;
}

// Found the same way from src/ (tests) and dist/ (the CLI and its bundle): the build writes both here.
const NATIVE_DIR = fileURLToPath(new URL('../../dist/native/', import.meta.url));
/** The helper that hands a sandbox's listening socket to the gateway (native/handoff.c), static. */
export const HANDOFF_BINARY = join(NATIVE_DIR, 'moat-handoff');
const ADDON = join(NATIVE_DIR, 'fdpass.node');

let addon: FdPass | null | undefined;
export function fdPass(): FdPass | undefined {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(ADDON) as FdPass;
    } catch {
      addon = null;
    }
  }
  return addon ?? undefined;
}

/** Whether this install can give sandboxes the handover: both native parts were built. */
export function handoffBuilt(): boolean {
  return existsSync(HANDOFF_BINARY) && existsSync(ADDON);
}
