import type { ServerResponse } from 'node:http';
import type { DashboardApi } from './api.js';

/** How often a followed log's new text goes to the page: one event per tick, not one per write. */
export const LOG_TICK_MS = 200;
/** The most text one tick sends; a task writing faster loses the middle, and the page is told how much. */
export const LOG_MAX_TICK = 256 * 1024;
const MAX_BUFFERED = 4 * 1024 * 1024;

/**
 * A task's logs followed over Server-Sent Events: `tail` (the last lines, replacing what the page
 * shows, so a reconnect never repeats them), then `logs` batches as the container writes, then
 * `end` when the container stops. The engine's stream ends when the page leaves. A flood costs
 * one event per tick of bounded size, and a page that does not read is dropped.
 */
export async function streamLogs(res: ServerResponse, api: DashboardApi, repoKey: unknown, task: unknown): Promise<void> {
  // The task is looked up before anything is sent: a bad name is a JSON error, not an event stream.
  await api.record(repoKey, task);
  const stop = new AbortController();
  res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
  res.on('close', () => stop.abort());
  const send = (event: string, data: unknown) => {
    if (res.writableLength > MAX_BUFFERED) return void res.destroy();
    // JSON has no raw newline: one data line per event.
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  let first = true;
  let pending = '';
  let skipped = 0;
  const flush = () => {
    // The first tick always sends the tail, empty or not: the page then knows the stream is on.
    if (!first && !pending && !skipped) return;
    send(first ? 'tail' : 'logs', { text: pending, skipped });
    first = false;
    pending = '';
    skipped = 0;
  };
  const timer = setInterval(flush, LOG_TICK_MS);
  try {
    await api.followLogs(
      repoKey,
      task,
      (text) => {
        pending += text;
        if (pending.length > LOG_MAX_TICK) {
          skipped += pending.length - LOG_MAX_TICK;
          pending = pending.slice(-LOG_MAX_TICK);
        }
      },
      stop.signal,
    );
    flush();
    send('end', { reason: stop.signal.aborted ? 'left' : 'the container stopped' });
  } catch (error) {
    send('end', { reason: (error as Error).message });
  } finally {
    clearInterval(timer);
    res.end();
  }
}
