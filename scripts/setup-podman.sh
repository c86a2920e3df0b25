#!/usr/bin/env bash
# Podman for moat and its tests, beside Docker (Podman's storage is its own; dockerd is not touched).
# Run as root:
#   bash scripts/setup-podman.sh rootful    # install, start root's API service at /run/podman/podman.sock, load the base image
#   bash scripts/setup-podman.sh rootless   # the same for the non-root test user (scripts/test-user.sh, moatci by default)
#   bash scripts/setup-podman.sh stop       # end the services this script started, remove moat's Podman containers and volumes
# The base image moves from Docker with `docker save | podman load`, never from a registry. Facts of
# Debian 12 (podman 4.3.1, cgroup v1 hybrid): containers need runc (crun fails on hybrid cgroups);
# rootless needs uidmap (newuidmap) and subordinate ids; rootless on cgroup v1 cannot set any
# resource limit, which moat refuses unless the user's config accepts it (acceptUnenforcedLimits).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/close-inherited-fds.sh
say() { printf 'setup-podman: %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || { say "run as root (it installs packages and starts root's service)"; exit 1; }
BASE=${MOAT_BASE_IMAGE:-moat-base:bookworm}
ROOT_SOCKET=/run/podman/podman.sock
PIDFILE=/run/podman/moat-service.pid
TEST_USER=${MOAT_TEST_USER:-moatci}

install_podman() {
  local missing=()
  for pkg in podman runc catatonit uidmap slirp4netns fuse-overlayfs; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
}

wait_socket() {
  for _ in $(seq 1 100); do [[ -S $1 ]] && return 0; sleep 0.1; done
  say "no socket at $1"
  return 1
}

# True when a service answers on the socket. A socket file nobody listens on (its service was
# killed: test-user.sh stop ends all the user's processes) is removed, so the service starts again.
answering() {
  [[ -S $1 ]] || return 1
  node -e 'require("net").connect(process.argv[1]).on("connect", () => process.exit(0)).on("error", () => process.exit(1))' "$1" && return 0
  say "no service answers on $1: removing the stale socket"
  rm -f "$1"
  return 1
}

# Runs as the test user, in its copy of the checkout.
as_user() { bash scripts/test-user.sh run "$@"; }

case ${1:-} in
  rootful)
    install_podman
    docker image inspect "$BASE" >/dev/null 2>&1 || { say "build the base image first: bash scripts/build-base-image.sh"; exit 1; }
    install -d -m 755 /run/podman
    if ! answering "$ROOT_SOCKET"; then
      # --time=0: the tests' service lives until `stop` (moat's own start uses an idle time).
      (cd / && exec setsid podman system service --time=0 "unix://$ROOT_SOCKET" >/run/podman/moat-service.log 2>&1 </dev/null) &
      echo $! >"$PIDFILE"
      wait_socket "$ROOT_SOCKET"
      say "root's Podman API service at $ROOT_SOCKET (pid $(cat "$PIDFILE"))"
    fi
    if ! podman image exists "$BASE"; then
      say "loading $BASE into Podman (docker save | podman load)"
      docker save "$BASE" | podman load -q >/dev/null
    fi
    say "ready: MOAT_ENGINE=podman MOAT_ENGINE_SOCKET=$ROOT_SOCKET"
    ;;
  rootless)
    install_podman
    docker image inspect "$BASE" >/dev/null 2>&1 || { say "build the base image first: bash scripts/build-base-image.sh"; exit 1; }
    bash scripts/test-user.sh setup
    uid=$(id -u "$TEST_USER")
    socket=/run/user/$uid/podman/podman.sock
    # Native overlay (kernel 5.13+): without a storage.conf rootless Podman falls back to vfs here
    # (/dev/fuse is root's), which copies the whole image per container and leaves / at mode 0700.
    as_user bash -c 'conf=$HOME/.config/containers/storage.conf; [[ -f $conf ]] && exit 0
      mkdir -p "${conf%/*}"; printf "[storage]\ndriver = \"overlay\"\n" >"$conf"; podman system reset -f >/dev/null 2>&1 || true'
    if ! answering "$socket"; then
      # The user's own service: no daemon as root anywhere. Detached, so it outlives this command.
      # From /: conmon inherits the service's working directory and fails ("Failed to get working
      # directory") once it is gone, as the user's copy of the checkout is at the next setup.
      as_user bash -c 'mkdir -p "$XDG_RUNTIME_DIR/podman"; cd /; setsid podman system service --time=0 "unix://$XDG_RUNTIME_DIR/podman/podman.sock" \
        >"$XDG_RUNTIME_DIR/podman/moat-service.log" 2>&1 </dev/null & echo $! >"$XDG_RUNTIME_DIR/podman/moat-service.pid"'
      wait_socket "$socket"
      say "$TEST_USER's rootless Podman API service at $socket"
    fi
    if ! as_user podman image exists "$BASE"; then
      say "loading $BASE into $TEST_USER's Podman (docker save | podman load)"
      docker save "$BASE" | as_user podman load -q >/dev/null
    fi
    say "ready: bash scripts/test-user.sh run env MOAT_ENGINE=podman MOAT_ENGINE_SOCKET=$socket …"
    ;;
  stop)
    # Rootless first (its service is the user's), then root's. Only what moat labelled is removed.
    if id -u "$TEST_USER" >/dev/null 2>&1 && [[ -d $(getent passwd "$TEST_USER" | cut -d: -f6)/moat ]]; then
      as_user bash -c 'podman ps -aq --filter label=moat.task | xargs -r podman rm -f >/dev/null; podman volume ls -q --filter label=moat.task | xargs -r podman volume rm -f >/dev/null
        pid=$(cat "$XDG_RUNTIME_DIR/podman/moat-service.pid" 2>/dev/null) && kill "$pid" 2>/dev/null; rm -f "$XDG_RUNTIME_DIR/podman/moat-service.pid" "$XDG_RUNTIME_DIR/podman/podman.sock"' || true
    fi
    if command -v podman >/dev/null; then
      podman ps -aq --filter label=moat.task | xargs -r podman rm -f >/dev/null || true
      podman volume ls -q --filter label=moat.task | xargs -r podman volume rm -f >/dev/null || true
    fi
    if [[ -f $PIDFILE ]]; then
      kill "$(cat "$PIDFILE")" 2>/dev/null || true
      rm -f "$PIDFILE" "$ROOT_SOCKET"
    fi
    say "stopped"
    ;;
  *)
    say "usage: setup-podman.sh rootful|rootless|stop"
    exit 2
    ;;
esac
