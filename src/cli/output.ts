import { isMoatError, ExitCode } from '../errors.js';
import { redact } from '../domain/redact.js';
import { Writable } from 'node:stream';
import { TerminalStream, terminalJson, terminalLines, terminalText } from '../domain/terminal-text.js';

/**
 * Results go to stdout (text or JSON); everything else (progress, warnings, errors) to stderr.
 *
 * Terminal safety (src/domain/terminal-text.ts): everything printed here passes one escaping
 * step, so no control or bidi character a sandbox wrote reaches the terminal even where a command
 * forgot a field. A result's text keeps its newlines and tabs (moat's own line structure), so a
 * command must still put every sandbox-controlled field through terminalText itself, which
 * escapes newlines too: a file name must not be able to start a line that looks like moat's.
 * Notes and errors are one line each, escaped whole. JSON stays the same data, with the
 * characters JSON.stringify leaves raw written as \u escapes.
 */
export interface Output {
  json: boolean;
  result(data: unknown, text: () => string): void;
  note(line: string): void;
}

export function createOutput(json: boolean, secrets: () => Iterable<string> = () => [], stdout: NodeJS.WritableStream = process.stdout, stderr: NodeJS.WritableStream = process.stderr): Output {
  // Results, notes and errors all pass through the one redaction function, then the escaping.
  const clean = (text: string) => redact(text, [...secrets()]);
  return {
    json,
    result(data, text) {
      if (json) stdout.write(`${terminalJson(clean(JSON.stringify(data, null, 2)))}\n`);
      else {
        const body = text();
        if (body) stdout.write(terminalLines(clean(body.endsWith('\n') ? body : `${body}\n`)));
      }
    },
    note(line) {
      stderr.write(`moat: ${terminalText(clean(line))}\n`);
    },
  };
}

/** Turns any error into the one-line cause + hint the user sees, and the exit code. */
export function reportError(error: unknown, json: boolean, secrets: Iterable<string> = [], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): number {
  const values = [...secrets];
  const stdout = { write: (text: string) => out.write(redact(text, values)) };
  const stderr = { write: (text: string) => err.write(redact(text, values)) };
  // The one place errors are written: a message may carry a file name, a host name or a line of
  // git's output about the sandbox's work, so each line is escaped whole here (newlines too).
  if (isMoatError(error)) {
    if (json) stdout.write(`${terminalJson(JSON.stringify({ error: error.toJSON() }, null, 2))}\n`);
    const lines = (error.details?.lines as string[] | undefined) ?? [];
    stderr.write(`moat: error: ${terminalText(error.message)}\n`);
    for (const extra of lines.slice(1)) stderr.write(`  ${terminalText(String(extra))}\n`);
    if (error.hint) stderr.write(`  hint: ${terminalText(error.hint)}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  if (json) stdout.write(`${terminalJson(JSON.stringify({ error: { code: 'E_INTERNAL', message, exitCode: ExitCode.internal } }, null, 2))}\n`);
  stderr.write(`moat: internal error: ${terminalText(message)}\n  hint: this is a bug in moat; please report it with the command you ran (MOAT_DEBUG=1 shows the stack)\n`);
  if (process.env.MOAT_DEBUG && error instanceof Error) stderr.write(`${terminalLines(String(error.stack))}\n`);
  return ExitCode.internal;
}

export function formatAge(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

/** Columns padded to width; every cell is escaped whole (a cell is one line, whatever it holds). */
export function table(cells: string[][]): string {
  const rows = cells.map((row) => row.map((cell) => terminalText(cell)));
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length)));
  return rows.map((row) => row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]!))).join('  ')).join('\n');
}

/**
 * A sandbox's output on its way to a terminal (a container's log, an agent's answer): newlines
 * and tabs stay, every other control shows escaped. End it to flush a character cut in two.
 */
export function escapedStream(target: NodeJS.WritableStream): Writable {
  const text = new TerminalStream();
  const send = (chunk: string, done: () => void) => {
    if (!chunk || target.write(chunk)) done();
    else target.once('drain', done);
  };
  return new Writable({
    write: (chunk: Buffer, _encoding, done) => send(text.push(chunk), () => done()),
    final: (done) => send(text.end(), () => done()),
  });
}
