#!/usr/bin/env node
import { existsSync } from 'node:fs';

// A closed pipe (moat ls | head) is the reader's choice, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });
}
// The one-file bundle starts faster; the plain build is the fallback.
const bundle = new URL('../dist/cli/main.bundle.mjs', import.meta.url);
const { main } = await import(existsSync(bundle) ? bundle.href : '../dist/cli/main.js');
process.exitCode = await main(process.argv);
