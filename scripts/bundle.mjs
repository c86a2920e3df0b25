// Bundles the CLI into one file (dist/cli/main.bundle.mjs): resolving and reading hundreds of
// module files is a measurable share of every moat command's start (docs/benchmarks.md). It sits
// beside dist/cli/main.js so paths relative to it (templates/, the gateway daemon) stay the same.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/cli/main.bundle.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
  // Native or optional parts of dockerode's dependencies stay in node_modules.
  external: ['ssh2', 'cpu-features', '@grpc/grpc-js', '@grpc/proto-loader', 'protobufjs'],
  banner: { js: "import { createRequire as __moatRequire } from 'node:module'; const require = __moatRequire(import.meta.url);" },
});
