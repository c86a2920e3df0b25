#!/usr/bin/env node
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

// A closed pipe (moat ls | head) is the reader's choice, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });
}

/**
 * The one-file bundle, compiled from V8's code cache when one was written for exactly this
 * bundle: parsing and compiling it is most of a command's start. V8 checks the cache against the
 * source's length only, so moat keys it by the bundle's hash; anything off, and it compiles anew.
 */
function loadBundle(file) {
  const source = readFileSync(file, 'utf8');
  const digest = createHash('sha256').update(source).digest();
  const cacheFile = file.replace(/\.cjs$/, '.cache');
  let cachedData;
  try {
    const cache = readFileSync(cacheFile);
    if (cache.subarray(0, 32).equals(digest)) cachedData = cache.subarray(32);
  } catch {
    // No cache: compile from source.
  }
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
  const module = { exports: {} };
  script.runInThisContext().call(module.exports, module.exports, createRequire(file), module, file, dirname(file));
  const writeCache = () => writeFileSync(cacheFile, Buffer.concat([digest, script.createCachedData()]));
  return { main: module.exports.main, writeCache: process.env.MOAT_WRITE_CODE_CACHE === '1' ? writeCache : undefined };
}

const bundle = fileURLToPath(new URL('../dist/cli/main.bundle.cjs', import.meta.url));
let loaded;
try {
  loaded = loadBundle(bundle);
} catch (error) {
  // Only a missing bundle falls back to the plain build; a broken one is a bug to see.
  if (error.code !== 'ENOENT') throw error;
  loaded = { main: (await import('../dist/cli/main.js')).main };
}
process.exitCode = await loaded.main(process.argv);
// After a run, the cache also holds the functions that run compiled (npm run build does this once).
loaded.writeCache?.();
