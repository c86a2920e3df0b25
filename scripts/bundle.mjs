// Bundles the CLI into one file (dist/cli/main.bundle.cjs): resolving and reading hundreds of
// module files is a measurable share of every moat command's start (docs/benchmarks.md). It sits
// beside dist/cli/main.js so paths relative to it (templates/, the gateway daemon) stay the same.
// CommonJS, because a classic script can be compiled from V8's code cache (bin/moat.js), which
// Node 20 offers for no ES module; the cache is written here by one warm-up run.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

/**
 * dockerode loads gRPC (for BuildKit sessions) and ssh2 (for ssh:// engines) when it loads; moat
 * uses neither (the classic builder, a unix socket), and loading them was a third of every
 * command's start. In the bundle they become stand-ins whose every member throws if ever called.
 */
const unused = /^(ssh2|@grpc\/grpc-js|@grpc\/proto-loader|protobufjs)$/;
const standIns = {
  name: 'unused-engine-transports',
  setup(b) {
    b.onResolve({ filter: unused }, (args) => ({ path: args.path, namespace: 'moat-unused' }));
    b.onLoad({ filter: /.*/, namespace: 'moat-unused' }, (args) => ({
      contents: `const fail = function () { throw new Error(${JSON.stringify(`moat does not use ${args.path}`)}); };
module.exports = new Proxy({}, { get: (_, key) => (key === '__esModule' ? false : fail) });`,
      loader: 'js',
    }));
  },
};

await build({
  entryPoints: ['dist/cli/entry.js'],
  outfile: 'dist/cli/main.bundle.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
  minifyWhitespace: true,
  minifySyntax: true,
  plugins: [standIns],
  // The Kubernetes client (and its dependencies) loads only when engine: kubernetes is chosen:
  // left out of the bundle, it costs the other engines' commands nothing at start.
  external: ['cpu-features', '@kubernetes/client-node', 'ws'],
  // Paths relative to the module (templates/, the gateway daemon) resolve from the bundle's own place.
  define: { 'import.meta.url': '__moatModuleUrl' },
  banner: { js: "const __moatModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});

rmSync('dist/cli/main.bundle.mjs', { force: true });
const warmUp = spawnSync(process.execPath, ['bin/moat.js', '--version'], {
  env: { ...process.env, MOAT_WRITE_CODE_CACHE: '1' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (warmUp.status !== 0) throw new Error('bundle: the warm-up run that writes the code cache failed');
