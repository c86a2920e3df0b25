import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

/**
 * A command in a real terminal: util-linux `script` gives it a pty of a known size (node has none
 * in core), keys are written as a person types them, and the screen is read back as text.
 */
export class Terminal {
  private readonly child: ChildProcessWithoutNullStreams;
  private raw = '';
  readonly exited: Promise<number>;

  /**
   * `answerQueries`: reply as a terminal does to what a TUI asks before it draws (cursor position,
   * device attributes, colours, modes, size); some wait for the answers (OpenCode's does).
   */
  constructor(command: string, options: { cwd: string; env: NodeJS.ProcessEnv; rows?: number; cols?: number; answerQueries?: boolean }) {
    const sized = `stty rows ${options.rows ?? 40} cols ${options.cols ?? 120}; exec ${command}`;
    this.child = spawn('script', ['-qec', sized, '/dev/null'], {
      cwd: options.cwd,
      env: { ...options.env, TERM: 'xterm-256color' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout.on('data', (c: Buffer) => {
      const text = c.toString('utf8');
      this.raw += text;
      if (options.answerQueries) this.answer(text, options.rows ?? 40, options.cols ?? 120);
    });
    this.child.stderr.on('data', (c: Buffer) => (this.raw += c.toString('utf8')));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code ?? -1)));
  }

  private answer(text: string, rows: number, cols: number): void {
    const replies: string[] = [];
    if (text.includes('\x1b[6n')) replies.push('\x1b[1;1R');
    if (/\x1b\[0?c/.test(text)) replies.push('\x1b[?62;22c');
    if (text.includes('\x1b[>0q') || text.includes('\x1b[>q')) replies.push('\x1bP>|xterm(370)\x1b\\');
    if (text.includes('\x1b[?u')) replies.push('\x1b[?0u');
    for (const m of text.matchAll(/\x1b\](1[01]);\?(\x07|\x1b\\)/g))
      replies.push(`\x1b]${m[1]};rgb:${m[1] === '10' ? 'ffff/ffff/ffff' : '0000/0000/0000'}\x1b\\`);
    for (const m of text.matchAll(/\x1b\[\?(\d+)\$p/g)) replies.push(`\x1b[?${m[1]};2$y`);
    if (text.includes('\x1b[14t')) replies.push(`\x1b[4;${rows * 16};${cols * 8}t`);
    if (text.includes('\x1b[16t')) replies.push('\x1b[6;16;8t');
    if (text.includes('\x1b[18t')) replies.push(`\x1b[8;${rows};${cols}t`);
    if (replies.length > 0 && this.child.exitCode === null) this.child.stdin.write(replies.join(''));
  }

  /** What was drawn so far, without escape sequences and with no whitespace: TUIs move the cursor between words. */
  screen(): string {
    return this.raw
      .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, '')
      .replace(/\x1b\[[0-9;?<>=]*[ -/]*[@-~]/g, '')
      .replace(/\x1b[()][0-9A-Za-z]|\x1b[=>78c]/g, '')
      .replace(/\s+/g, '');
  }

  /** The raw output, for a failure message. */
  output(): string {
    return this.raw;
  }

  type(keys: string): void {
    this.child.stdin.write(keys);
  }

  /** Waits until `check` holds, running `meanwhile` every `everyMs` (re-pressing a key a busy TUI dropped). */
  async until(check: () => boolean, what: string, options: { ms?: number; everyMs?: number; meanwhile?: () => void } = {}): Promise<void> {
    const deadline = Date.now() + (options.ms ?? 60_000);
    let next = Date.now() + (options.everyMs ?? 2000);
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`terminal: timed out waiting for ${what}; screen:\n${this.screen().slice(-3000)}`);
      if (options.meanwhile && Date.now() >= next) {
        options.meanwhile();
        next = Date.now() + (options.everyMs ?? 2000);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Ends the session if it is still running. */
  async close(): Promise<void> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    await this.exited;
  }
}
