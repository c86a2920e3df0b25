import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

/**
 * A command in a real terminal: util-linux `script` gives it a pty of a known size (node has none
 * in core), keys are written as a person types them, and the screen is read back as text.
 */
export class Terminal {
  private readonly child: ChildProcessWithoutNullStreams;
  private raw = '';
  readonly exited: Promise<number>;

  constructor(command: string, options: { cwd: string; env: NodeJS.ProcessEnv; rows?: number; cols?: number }) {
    const sized = `stty rows ${options.rows ?? 40} cols ${options.cols ?? 120}; exec ${command}`;
    this.child = spawn('script', ['-qec', sized, '/dev/null'], {
      cwd: options.cwd,
      env: { ...options.env, TERM: 'xterm-256color' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout.on('data', (c: Buffer) => (this.raw += c.toString('utf8')));
    this.child.stderr.on('data', (c: Buffer) => (this.raw += c.toString('utf8')));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code ?? -1)));
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
