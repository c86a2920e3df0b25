import { Writable } from 'node:stream';

/**
 * A command's output stream, kept within a budget: its first and last halves, so that both how a
 * command started and how it ended (a test run's summary) survive, and the count of what was cut.
 */
export class CapturedOutput extends Writable {
  private readonly head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  total = 0;

  constructor(private readonly budget: number) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.total += chunk.length;
    const half = Math.floor(this.budget / 2);
    if (this.headBytes < half) {
      const taken = chunk.subarray(0, half - this.headBytes);
      this.head.push(taken);
      this.headBytes += taken.length;
      chunk = chunk.subarray(taken.length);
    }
    if (chunk.length > 0) {
      this.tail.push(chunk);
      this.tailBytes += chunk.length;
      const keep = this.budget - half;
      while (this.tailBytes - (this.tail[0]?.length ?? 0) >= keep) this.tailBytes -= this.tail.shift()!.length;
    }
    done();
  }

  /** The output as text (UTF-8, a character cut at the seam shown as U+FFFD) and what was left out. */
  text(): { text: string; bytes: number; droppedBytes: number } {
    const head = Buffer.concat(this.head);
    let tail = Buffer.concat(this.tail);
    const keep = this.budget - Math.floor(this.budget / 2);
    if (tail.length > keep) tail = tail.subarray(tail.length - keep);
    const dropped = this.total - head.length - tail.length;
    const text =
      dropped > 0 ? `${head.toString('utf8')}\n[… ${dropped} bytes left out …]\n${tail.toString('utf8')}` : Buffer.concat([head, tail]).toString('utf8');
    return { text, bytes: this.total, droppedBytes: dropped };
  }
}
