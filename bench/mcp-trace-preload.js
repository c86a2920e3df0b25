// Loaded into `moat mcp`'s server by bench/mcp-trace.js (NODE_OPTIONS=--import): writes to stderr,
// in epoch milliseconds, when a request comes in, each GC, and when a message of 100 KB or more
// starts and ends being written, with the minor page faults counted at each (never to stdout, the
// protocol's). Only in the server process (dist/mcp/main.js), not in the `moat mcp` that starts it.
import { writeSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';

if (process.argv[1]?.endsWith('mcp/main.js')) {
  const now = () => (performance.timeOrigin + performance.now()).toFixed(1);
  const faults = () => process.resourceUsage().minorPageFault;
  const log = (line) => writeSync(2, `TRACE ${line}\n`);
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) log(`gc ${(performance.timeOrigin + entry.startTime).toFixed(1)} ${entry.duration.toFixed(1)}`);
  }).observe({ entryTypes: ['gc'] });
  const emit = process.stdin.emit;
  process.stdin.emit = function (event, ...args) {
    if (event === 'data') log(`in ${now()} ${faults()}`);
    return emit.call(this, event, ...args);
  };
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk, ...rest) => {
    if (chunk.length < 100_000) return write(chunk, ...rest);
    log(`write ${now()} ${faults()}`);
    const ok = write(chunk, ...rest);
    log(`written ${now()} ${faults()}`);
    return ok;
  };
}
