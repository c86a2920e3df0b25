'use strict';
// A claim's time line through the CLI, for bench/kubernetes.js (BENCH_K8S_TRACE=1): preloaded
// (NODE_OPTIONS=--require) into the moat client and the warm server it starts, it appends one JSON
// line per event to $MOAT_TRACE_LOG, on one clock (epoch ms): the process's start, each HTTP
// request to the API server (start, response or upgrade), each child process (git), each connection
// the server accepts and its first write back (the command's first output), the event loop's stalls
// (> 20 ms late) and GC pauses (> 5 ms). Not moat's code: nothing here changes what it does.
const { appendFileSync } = require('node:fs');
const childProcess = require('node:child_process');
const diagnostics = require('node:diagnostics_channel');
const { PerformanceObserver, performance } = require('node:perf_hooks');

const file = process.env.MOAT_TRACE_LOG;
if (file) {
  const now = () => performance.timeOrigin + performance.now();
  const role = process.argv[2] === '__serve' ? 'server' : 'client';
  const log = (event, extra = {}) => {
    try {
      appendFileSync(file, `${JSON.stringify({ t: Math.round(now() * 10) / 10, pid: process.pid, role, event, ...extra })}\n`);
    } catch {
      // The trace is best effort.
    }
  };
  log('start', { t0: performance.timeOrigin, argv: process.argv.slice(2, 5) });
  diagnostics.subscribe('http.client.request.start', ({ request }) => {
    const what = `${request.method} ${String(request.path)
      .split('?')[0]
      .replace(/^\/api\/v1\/namespaces\/[^/]+/, '')}`;
    log('http', { what });
    request.once('upgrade', () => log('http-upgrade', { what }));
    request.once('response', () => log('http-response', { what }));
  });
  diagnostics.subscribe('net.server.socket', ({ socket }) => {
    log('accept');
    const write = socket.write;
    let first = true;
    socket.write = function (...args) {
      if (first) {
        first = false;
        log('first-write');
      }
      return write.apply(this, args);
    };
    socket.once('close', () => log('close'));
  });
  for (const name of ['spawn', 'execFile']) {
    const original = childProcess[name];
    childProcess[name] = function (command, args, ...rest) {
      // git's subcommand, past its -c options.
      const words = Array.isArray(args) ? args.filter((word, i) => word !== '-c' && args[i - 1] !== '-c') : [];
      const what = [command, ...words.slice(0, 3)].join(' ').slice(0, 80);
      const child = original.call(this, command, args, ...rest);
      log('child', { what });
      child.once('exit', () => log('child-exit', { what }));
      return child;
    };
  }
  if (role === 'server') {
    let expected = now() + 10;
    setInterval(() => {
      const late = now() - expected;
      if (late > 20) log('stall', { ms: Math.round(late) });
      expected = now() + 10;
    }, 10).unref();
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) if (entry.duration > 5) log('gc', { ms: Math.round(entry.duration) });
    }).observe({ entryTypes: ['gc'] });
  } else {
    const write = process.stdout.write;
    let first = true;
    process.stdout.write = function (...args) {
      if (first) {
        first = false;
        log('stdout');
      }
      return write.apply(this, args);
    };
  }
}
