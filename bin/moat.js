#!/usr/bin/env node
'use strict';
// CommonJS (bin/package.json): an ES module entry costs every command the module loader's start.
const { existsSync, rmSync } = require('node:fs');
const { join } = require('node:path');
// The code cache loads only where the command runs here (a served one does not need it).
const loadBundle = (file) => require('./code-cache.js').loadBundle(file);
const { runOnServer, servedCommand, serverSocket, startServer } = require('./server-client.js');

// A closed pipe (moat ls | head) is the reader's choice, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });
}

async function start() {
  const bundle = join(__dirname, '..', 'dist', 'cli', 'main.bundle.cjs');
  if (process.argv[2] === '__serve') {
    const { serve } = loadBundle(bundle);
    const socketPath = process.argv[3];
    await serve(socketPath, { idleSeconds: Number(process.env.MOAT_SERVER_IDLE_SECONDS) || 300 });
    rmSync(`${socketPath}.starting`, { force: true });
    return;
  }
  const socketPath = servedCommand(process.argv) && existsSync(bundle) ? serverSocket(bundle) : undefined;
  if (socketPath) {
    const code = await runOnServer(socketPath);
    if (code !== undefined) return leave(code);
  }
  let loaded;
  try {
    loaded = loadBundle(bundle);
  } catch (error) {
    // Only a missing bundle falls back to the plain build; a broken one is a bug to see.
    if (error.code !== 'ENOENT') throw error;
    loaded = { main: (await import('../dist/cli/main.js')).main };
  }
  const code = await loaded.main(process.argv);
  loaded.afterRun?.();
  if (socketPath) startServer(socketPath);
  leave(code);
}

/**
 * Ends with the command's status, as soon as its output is out. Left to end by itself, Node first
 * takes down its signal handlers, and a Ctrl-C in that moment killed moat with 130 after its
 * command had succeeded (an `up` that printed a whole task, reported as cancelled). A write to a
 * pipe is synchronous only while the pipe has room: one that found it full is queued, and leaving
 * at once lost it (the tail of a 4 MB output read by a slower reader). So each stream with
 * something queued is flushed first (an empty write's callback runs after what was queued before it).
 */
function leave(code) {
  process.exitCode = code;
  const queued = [process.stdout, process.stderr].filter((stream) => stream.writableLength > 0 && !stream.destroyed);
  let left = queued.length;
  if (left === 0) process.exit();
  for (const stream of queued)
    stream.write('', () => {
      left -= 1;
      if (left === 0) process.exit();
    });
}

void start();
