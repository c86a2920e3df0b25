#!/usr/bin/env bash
# Makes this machine ready for moat, from Debian's packages only: git, Docker (docker.io) with its
# daemon running, debootstrap, moat's own npm dependencies and build, and the base image.
# Idempotent: each step is skipped when it is already done. Used by `npm run demo`, `npm test`
# and CI, so the quick start works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# Used by moat itself (disk caps, ssh agents, interception) and by the tests (TLS fixtures, a real terminal).
command -v mkfs.ext4 >/dev/null 2>&1 || [[ -x /usr/sbin/mkfs.ext4 ]] || [[ -x /sbin/mkfs.ext4 ]] || missing+=(e2fsprogs)
command -v ssh-agent >/dev/null 2>&1 || missing+=(openssh-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
[[ -x /usr/sbin/squid ]] || missing+=(squid) # the egress tests' upstream proxy, and the gateway benchmark's baseline
# moat's native parts (scripts/build-native.mjs): a C compiler, and the C library to link statically.
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing ${missing[*]}; install them as root: apt-get install ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]} from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

docker_ok() { docker info >/dev/null 2>&1; }
if ! docker_ok; then
  if [[ $(id -u) -ne 0 ]]; then
    say "the Docker daemon is not reachable; start it (sudo systemctl start docker) or join the docker group"
    exit 1
  fi
  say "starting dockerd"
  if command -v systemctl >/dev/null 2>&1 && systemctl start docker >/dev/null 2>&1; then :; else
    nohup dockerd >/var/log/moat-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker_ok && break; sleep 1; done
  docker_ok || { say "dockerd did not come up; see /var/log/moat-dockerd.log"; exit 1; }
fi

if [[ ! -d node_modules ]]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
if [[ ! -f dist/cli/main.js || -n "$(find src native -newer dist/cli/main.js \( -name '*.ts' -o -name '*.c' -o -name '*.h' \) -print -quit 2>/dev/null)" ]]; then
  say "building moat"
  npm run build --silent
fi

bash scripts/build-base-image.sh >&2
