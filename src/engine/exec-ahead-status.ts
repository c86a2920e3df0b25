import { randomBytes } from 'node:crypto';

/**
 * The status in-band: an exec's own status comes ~150-190 ms after its command ended (dockershim
 * inspects the exec on a timer before it reports), so the waiting shell writes the command's
 * status itself, after a mark the host chose for this command alone (random: no honest output
 * holds it), as the last line of stdout and of stderr (each channel keeps its order; both are
 * awaited, so neither loses its tail). The host reads nothing from those bytes but that command's
 * exit code, which the sandbox decides anyway: a forged line can end the command's own output
 * early, or give it a code, nothing else. Without both lines (the shell killed, the pod gone) the
 * stream's own status or end decides, as for any exec. What a background process of the command
 * writes after the command ended is not passed on (its own exec would wait for it to close the
 * output); moat's commands do not leave one writing.
 */
export function statusMark(): string {
  // A control character first: output that ends in a few letters of the mark is held back until
  // the next chunk; with this first it rarely is.
  return `\u001emoat-status-${randomBytes(16).toString('hex')}:`;
}

/**
 * Passes a channel's bytes on until the status line (mark, digits, newline): what follows it is
 * not the command's. Bytes that may be the start of the mark are held until the next chunk says.
 */
export class StatusLine {
  private held: Buffer = Buffer.alloc(0);
  /** The status the line gave: a number from 0 to 255; null when the line was not one (then it is ignored). */
  code: number | null | undefined;
  private readonly mark: Buffer;

  constructor(mark: string) {
    this.mark = Buffer.from(mark);
  }

  /** The bytes of `chunk` (and of what was held) that are the command's output. */
  push(chunk: Buffer): Buffer {
    if (this.code !== undefined) return Buffer.alloc(0);
    const data = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
    const at = data.indexOf(this.mark);
    if (at >= 0) {
      const end = data.indexOf(0x0a, at + this.mark.length);
      if (end < 0 && data.length - at - this.mark.length <= 3) {
        this.held = data.subarray(at);
        return data.subarray(0, at);
      }
      const digits = data.subarray(at + this.mark.length, end < 0 ? data.length : end).toString('latin1');
      this.code = /^[0-9]{1,3}$/.test(digits) && Number(digits) <= 255 ? Number(digits) : null;
      this.held = Buffer.alloc(0);
      return data.subarray(0, at);
    }
    let keep = Math.min(data.length, this.mark.length - 1);
    while (keep > 0 && !data.subarray(data.length - keep).equals(this.mark.subarray(0, keep))) keep -= 1;
    this.held = data.subarray(data.length - keep);
    return data.subarray(0, data.length - keep);
  }

  /** What is held when the stream ends without the line: it was output after all. */
  flush(): Buffer {
    const held = this.held;
    this.held = Buffer.alloc(0);
    return held;
  }
}
