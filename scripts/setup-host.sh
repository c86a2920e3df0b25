#!/usr/bin/env bash
# Makes this machine ready for moat, from Debian's packages only: git, Docker (docker.io) with its
# daemon running, debootstrap, moat's own npm dependencies and build, and the base image.
# Idempotent: each step is skipped when it is already done. Used by `npm run demo`, `npm test`
# and CI, so the quick start works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/close-inherited-fds.sh

say() { printf 'setup: %s\n' "$*" >&2; }
# Installed programs, also the administrator's (dockerd, debootstrap, mkfs.ext4 are in /usr/sbin,
# which a normal user's PATH does not hold on Debian).
have() {
  command -v "$1" >/dev/null 2>&1 && return
  local dir
  for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do [[ -x "$dir/$1" ]] && return; done
  return 1
}

missing=()
have git || missing+=(git)
have dockerd || missing+=(docker.io)
have debootstrap || missing+=(debootstrap)
# Used by moat itself (disk caps, ssh agents, interception) and by the tests (TLS fixtures, a real terminal).
have mkfs.ext4 || missing+=(e2fsprogs)
have ssh-agent || missing+=(openssh-client)
have openssl || missing+=(openssl)
have script || missing+=(bsdutils)
have squid || missing+=(squid) # the egress tests' upstream proxy, and the gateway benchmark's baseline
have chromium || missing+=(chromium) # moat ui's browser tests (driven by playwright-core; no browser download)
# moat's native parts (scripts/build-native.mjs): a C compiler, and the C library to link statically.
have cc || missing+=(gcc libc6-dev)
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing ${missing[*]}; install them as root (the one command): apt-get install ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]} from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

docker_ok() { docker info >/dev/null 2>&1; }
if ! docker_ok; then
  if [[ $(id -u) -ne 0 ]]; then
    if [[ -S /var/run/docker.sock && ! -w /var/run/docker.sock ]]; then
      say "you may not use the Docker daemon; as root: usermod -aG docker $(id -un) (then log in again)"
    else
      say "the Docker daemon is not running; as root: systemctl start docker"
    fi
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

# gVisor (isolation: gvisor): Debian's runsc, registered with Docker (scripts/setup-gvisor.sh says
# what it does; dockerd only reloads, and only when the runtime was added). Needs root.
if [[ $(id -u) -eq 0 ]]; then
  bash scripts/setup-gvisor.sh || say "gVisor is not available (isolation: gvisor will be refused); see above"
else
  say "gVisor not set up (needs root): sudo bash scripts/setup-gvisor.sh"
fi

bash scripts/build-base-image.sh >&2
