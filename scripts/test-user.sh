#!/usr/bin/env bash
# The non-root user of the test phases that must not run as root (a docker-group user, rootless
# Podman). Run as root, from a checkout that is built (`npm ci`, `npm run build`):
#   bash scripts/test-user.sh setup          # the user, its subordinate ids, its runtime dir, a copy of this checkout
#   bash scripts/test-user.sh run CMD...     # CMD as that user, in its copy, with a login-like environment
#   bash scripts/test-user.sh stop           # the user's processes ended, its copy removed (the user stays)
# The user gets its own copy of the checkout (owned by it) because the tests write into the tree
# (dist, test-results, scratch) and a root-owned clone is not the user's to write.
set -euo pipefail
cd "$(dirname "$0")/.."
USER_NAME=${MOAT_TEST_USER:-moatci}
say() { printf 'test-user: %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || { say "run as root (it creates a user)"; exit 1; }

home_of() { getent passwd "$USER_NAME" | cut -d: -f6; }

case ${1:-} in
  setup)
    if ! id -u "$USER_NAME" >/dev/null 2>&1; then
      groups=()
      getent group docker >/dev/null && groups=(--groups docker)
      useradd --create-home --shell /bin/bash "${groups[@]}" "$USER_NAME"
      say "created $USER_NAME"
    elif getent group docker >/dev/null && ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx docker; then
      usermod -aG docker "$USER_NAME"
    fi
    # Subordinate ids for rootless engines (user namespaces), one range per user.
    for file in /etc/subuid /etc/subgid; do
      grep -q "^$USER_NAME:" "$file" 2>/dev/null || echo "$USER_NAME:200000:65536" >>"$file"
    done
    uid=$(id -u "$USER_NAME")
    # No logind here: the runtime dir a login would give (rootless engines keep their sockets there).
    install -d -m 700 -o "$USER_NAME" -g "$USER_NAME" "/run/user/$uid"
    home=$(home_of)
    say "copying $(pwd) to $home/moat"
    rm -rf "$home/moat" && mkdir -p "$home/moat"
    # .moat-demo and test-results are this checkout's own state, not the copy's.
    tar -C . --exclude=./.moat-demo --exclude=./test-results -cf - . | tar -C "$home/moat" -xf -
    chown -R "$USER_NAME:$USER_NAME" "$home/moat"
    ;;
  run)
    shift
    uid=$(id -u "$USER_NAME")
    home=$(home_of)
    # The registry's CA (a TLS-inspecting proxy on some networks) stays trusted for npm/node.
    exec runuser -u "$USER_NAME" -- env -i \
      HOME="$home" USER="$USER_NAME" LOGNAME="$USER_NAME" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
      XDG_RUNTIME_DIR="/run/user/$uid" LANG=C.UTF-8 CI="${CI:-}" \
      ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS="$NODE_EXTRA_CA_CERTS"} \
      ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} \
      bash -c 'cd "$HOME/moat" && exec "$@"' bash "$@"
    ;;
  stop)
    if id -u "$USER_NAME" >/dev/null 2>&1; then
      pkill -KILL -u "$USER_NAME" 2>/dev/null || true
      rm -rf "$(home_of)/moat"
      say "stopped $USER_NAME's processes, removed its copy"
    fi
    ;;
  *)
    say "usage: bash scripts/test-user.sh setup | run CMD... | stop"
    exit 2
    ;;
esac
