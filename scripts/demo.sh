#!/usr/bin/env bash
# moat's demo: sets the machine up if needed, then lets a misbehaving "agent" loose in a sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
exec node scripts/demo.mjs "$@"
