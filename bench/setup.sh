#!/usr/bin/env bash
# What the benchmarks need beyond the tests: squid (the standard egress proxy, for comparison) and openssl.
set -euo pipefail
missing=()
command -v squid >/dev/null 2>&1 || [[ -x /usr/sbin/squid ]] || missing+=(squid)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]} > 0)); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
