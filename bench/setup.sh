#!/usr/bin/env bash
# What the benchmarks need beyond the tests: squid (the standard egress proxy, for comparison), openssl and socat.
set -euo pipefail
missing=()
command -v squid >/dev/null 2>&1 || [[ -x /usr/sbin/squid ]] || missing+=(squid)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# bench/gateway.js's fallback row relays through socat on the host.
command -v socat >/dev/null 2>&1 || missing+=(socat)
if ((${#missing[@]} > 0)); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
