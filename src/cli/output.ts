import { isMoatError, ExitCode } from '../errors.js';
import { redact } from '../domain/redact.js';
import { Writable } from 'node:stream';
import { SandboxLines, terminalJson, terminalLines, terminalText } from '../domain/terminal-text.js';

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
 *
 * Secrets: redaction is the last step, on the very text about to be written, and it looks for
 * each secret in every form the escaping can give it (see {@link redactor}). So the order in
 * which a command escapes a field and the output redacts cannot let a secret through.
 */
export interface Output {
  json: boolean;
  result(data: unknown, text: () => string): void;
  note(line: string): void;
  /** A question to ask on the terminal, as a note is written: one line, escaped, redacted. */
  question(line: string): string;
}

/**
 * The one redaction of what moat prints. A secret with a newline, a tab or a control in it reads
 * differently once escaped (`a\nb` rather than a newline), so each secret is looked for as it is
 * and as each escaping writes it: one line, many lines, inside a JSON string.
 */
export function redactor(secrets: Iterable<string>): (text: string) => string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    // redact() leaves out secrets too short to mean anything; their escaped forms are left out with them.
    if (secret.length < 4) continue;
    for (const form of [secret, terminalText(secret), terminalLines(secret), terminalJson(JSON.stringify(secret).slice(1, -1))]) forms.add(form);
  }
  // The longest first: a form that contains another must be replaced whole.
  const ordered = [...forms].sort((a, b) => b.length - a.length);
  return (text) => redact(text, ordered);
}

export function createOutput(
  json: boolean,
  secrets: () => Iterable<string> = () => [],
  stdout: NodeJS.WritableStream = process.stdout,
  stderr: NodeJS.WritableStream = process.stderr,
): Output {
  const write = (stream: NodeJS.WritableStream, text: string) => stream.write(redactor(secrets())(text));
  return {
    json,
    result(data, text) {
      if (json) write(stdout, `${terminalJson(JSON.stringify(data, null, 2))}\n`);
      else {
        const body = text();
        if (body) write(stdout, terminalLines(body.endsWith('\n') ? body : `${body}\n`));
      }
    },
    note(line) {
      write(stderr, `moat: ${terminalText(line)}\n`);
    },
    question(line) {
      return redactor(secrets())(`moat: ${terminalText(line)}`);
    },
  };
}

/** The frames of a stack, without the message V8 puts first (that is printed escaped on its own line). */
function stackFrames(error: Error): string[] {
  const stack = String(error.stack);
  const header = `${error.name}: ${error.message}`;
  const frames = stack.startsWith(header) ? stack.slice(header.length) : stack;
  return frames.split('\n').filter((line) => line.trim() !== '');
}

/** Turns any error into the one-line cause + hint the user sees, and the exit code. */
export function reportError(
  error: unknown,
  json: boolean,
  secrets: Iterable<string> = [],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): number {
  const clean = redactor(secrets);
  const stdout = { write: (text: string) => out.write(clean(text)) };
  const stderr = { write: (text: string) => err.write(clean(text)) };
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
  stderr.write(`moat: internal error: ${terminalText(message)}\n`);
  stderr.write('  hint: this is a bug in moat; please report it with the command you ran (MOAT_DEBUG=1 shows the stack)\n');
  // Each frame a line of its own, escaped whole and indented under "stack:"; the message (which
  // may hold anything, newlines included) is not repeated.
  if (process.env.MOAT_DEBUG && error instanceof Error) {
    stderr.write('  stack:\n');
    for (const frame of stackFrames(error)) stderr.write(`    ${terminalText(frame.trim())}\n`);
  }
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
 * A sandbox's output on its way to a terminal (a container's log, an agent's answer): each line
 * marked with the prefix and escaped (see SandboxLines). A line's start without its newline is
 * shown, as a line, once the sandbox has been quiet for a moment. End it to flush the rest.
 */
export function sandboxStream(target: NodeJS.WritableStream, prefix: string, quietMs = 200): Writable {
  const lines = new SandboxLines(prefix);
  let timer: NodeJS.Timeout | undefined;
  const send = (chunk: string, done: () => void) => {
    if (!chunk || target.write(chunk)) done();
    else target.once('drain', done);
  };
  return new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      clearTimeout(timer);
      send(lines.push(chunk), () => done());
      if (lines.holding) timer = setTimeout(() => send(lines.flush(), () => undefined), quietMs).unref();
    },
    final: (done) => {
      clearTimeout(timer);
      send(lines.end(), () => done());
    },
  });
}

/** Ends every stream and waits until each has written all it holds. */
export function endAll(streams: NodeJS.WritableStream[]): Promise<void> {
  return Promise.all(streams.map((stream) => new Promise<void>((resolve) => stream.end(() => resolve())))).then(() => undefined);
}
