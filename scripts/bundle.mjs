// Bundles the CLI into one file (dist/cli/main.bundle.mjs): resolving and reading hundreds of
// module files is a measurable share of every moat command's start (docs/benchmarks.md). It sits
// beside dist/cli/main.js so paths relative to it (templates/, the gateway daemon) stay the same.
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
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/cli/main.bundle.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
  minifyWhitespace: true,
  minifySyntax: true,
  plugins: [standIns],
  external: ['cpu-features'],
  banner: { js: "import { createRequire as __moatRequire } from 'node:module'; const require = __moatRequire(import.meta.url);" },
});
