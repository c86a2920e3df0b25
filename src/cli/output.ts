import { isMoatError, ExitCode } from '../errors.js';
import { redact } from '../domain/redact.js';

/** Results go to stdout (text or JSON); everything else (progress, warnings, errors) to stderr. */
export interface Output {
  json: boolean;
  result(data: unknown, text: () => string): void;
  note(line: string): void;
}

export function createOutput(json: boolean, secrets: () => Iterable<string> = () => [], stdout: NodeJS.WritableStream = process.stdout, stderr: NodeJS.WritableStream = process.stderr): Output {
  // Results, notes and errors all pass through the one redaction function.
  const clean = (text: string) => redact(text, [...secrets()]);
  return {
    json,
    result(data, text) {
      if (json) stdout.write(clean(`${JSON.stringify(data, null, 2)}\n`));
      else {
        const body = text();
        if (body) stdout.write(clean(body.endsWith('\n') ? body : `${body}\n`));
      }
    },
    note(line) {
      stderr.write(clean(`moat: ${line}\n`));
    },
  };
}

/** Turns any error into the one-line cause + hint the user sees, and the exit code. */
export function reportError(error: unknown, json: boolean, secrets: Iterable<string> = [], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): number {
  const values = [...secrets];
  const stdout = { write: (text: string) => out.write(redact(text, values)) };
  const stderr = { write: (text: string) => err.write(redact(text, values)) };
  if (isMoatError(error)) {
    if (json) stdout.write(`${JSON.stringify({ error: error.toJSON() }, null, 2)}\n`);
    const lines = (error.details?.lines as string[] | undefined) ?? [];
    stderr.write(`moat: error: ${error.message}\n`);
    for (const extra of lines.slice(1)) stderr.write(`  ${extra}\n`);
    if (error.hint) stderr.write(`  hint: ${error.hint}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  if (json) stdout.write(`${JSON.stringify({ error: { code: 'E_INTERNAL', message, exitCode: ExitCode.internal } }, null, 2)}\n`);
  stderr.write(`moat: internal error: ${message}\n  hint: this is a bug in moat; please report it with the command you ran (MOAT_DEBUG=1 shows the stack)\n`);
  if (process.env.MOAT_DEBUG && error instanceof Error) stderr.write(`${error.stack}\n`);
  return ExitCode.internal;
}

export function formatAge(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length)));
  return rows.map((row) => row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]!))).join('  ')).join('\n');
}
