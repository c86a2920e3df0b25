import { Writable } from 'node:stream';
import { CONTENT_BUDGET, wireBytes } from './result-budget.js';

/**
 * What one stream may take on the wire, per copy (a result carries it twice: the text a model
 * reads and structuredContent): two streams stay within {@link CONTENT_BUDGET}, so a command's
 * result fits one message of the SDK's stdio clients (10 MiB) even when every byte it wrote is
 * a control shown as `\x01` (five bytes in JSON) or invalid UTF-8 shown as U+FFFD (three).
 */
export const STREAM_WIRE_BUDGET = CONTENT_BUDGET / 2;

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

  /**
   * The output as text (UTF-8, a character cut at a seam shown as U+FFFD) and what was left out:
   * the first and last parts within the byte budget, cut further in the middle when their escaped
   * text would take more than `wireBudget` bytes in the JSON-RPC message.
   */
  text(wireBudget = STREAM_WIRE_BUDGET): { text: string; bytes: number; droppedBytes: number } {
    let head = Buffer.concat(this.head);
    let tail = Buffer.concat(this.tail);
    const keep = this.budget - Math.floor(this.budget / 2);
    if (tail.length > keep) tail = tail.subarray(tail.length - keep);
    for (;;) {
      const dropped = this.total - head.length - tail.length;
      const text =
        dropped > 0
          ? `${head.toString('utf8')}\n[… ${dropped} of ${this.total} bytes left out …]\n${tail.toString('utf8')}`
          : Buffer.concat([head, tail]).toString('utf8');
      const size = wireBytes(text);
      if (size <= wireBudget || head.length + tail.length === 0) return { text, bytes: this.total, droppedBytes: dropped };
      // Both parts shorter in proportion, and a little more: escapes are not spread evenly.
      const scale = (wireBudget / size) * 0.9;
      head = head.subarray(0, Math.floor(head.length * scale));
      tail = tail.subarray(tail.length - Math.floor(tail.length * scale));
    }
  }
}
