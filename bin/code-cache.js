'use strict';
// Loads moat's one-file bundle through V8's code cache (see loadBundle).
const { createHash } = require('node:crypto');
const { mkdirSync, readFileSync, renameSync, writeFileSync } = require('node:fs');
const { homedir } = require('node:os');
const { dirname, join } = require('node:path');
const { Script } = require('node:vm');

function readCache(file, digest) {
  try {
    const cache = readFileSync(file);
    return cache.subarray(0, 32).equals(digest) ? cache.subarray(32) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The one-file bundle, compiled from V8's code cache: parsing and compiling it is most of a
 * command's start. V8 checks a cache against the source's length only, so moat keys each cache by
 * the bundle's hash; anything off, and V8 compiles anew. `npm run build` writes a first cache;
 * the first runs of each command add what they compiled to one in the user's cache directory.
 */
function loadBundle(file) {
  const source = readFileSync(file, 'utf8');
  const digest = createHash('sha256').update(source).digest();
  const tag = digest.toString('hex').slice(0, 16);
  const userCache = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'moat', `code-${tag}`);
  const buildCache = file.replace(/\.cjs$/, '.cache');
  const command = process.argv.slice(2).find((arg) => /^[a-z][a-z-]*$/.test(arg)) ?? '-';
  let seen = [];
  try {
    seen = readFileSync(`${userCache}.seen`, 'utf8').split('\n');
  } catch {
    // First run of this bundle here.
  }
  const cachedData = readCache(`${userCache}.cache`, digest) ?? readCache(buildCache, digest);
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
  const module = { exports: {} };
  script.runInThisContext().call(module.exports, module.exports, require, module, file, dirname(file));
  const save = (target) => {
    const part = `${target}.${process.pid}`;
    writeFileSync(part, Buffer.concat([digest, script.createCachedData()]), { mode: 0o600 });
    renameSync(part, target);
  };
  const afterRun = () => {
    if (process.env.MOAT_WRITE_CODE_CACHE === '1') return save(buildCache);
    if (seen.includes(command) || seen.length > 24) return;
    try {
      mkdirSync(dirname(userCache), { recursive: true, mode: 0o700 });
      save(`${userCache}.cache`);
      writeFileSync(`${userCache}.seen`, [...seen.filter(Boolean), command].join('\n'), { mode: 0o600 });
    } catch {
      // A cache is an optimisation: a read-only home just means compiling each time.
    }
  };
  return { main: module.exports.main, serve: module.exports.serve, afterRun };
}

module.exports = { loadBundle };
