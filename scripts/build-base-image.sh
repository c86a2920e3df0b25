#!/usr/bin/env bash
# Builds moat's base image offline-from-registries: a Debian root filesystem made by
# debootstrap from Debian's own packages, imported with `docker import`. Nothing is pulled
# from an image registry, so CI and air-gapped machines get the same, auditable base.
#
# Usage: scripts/build-base-image.sh [--force]
# Env:   MOAT_BASE_IMAGE (default moat-base:bookworm), MOAT_DEBIAN_MIRROR, MOAT_DEBIAN_SUITE
set -euo pipefail

image="${MOAT_BASE_IMAGE:-moat-base:bookworm}"
suite="${MOAT_DEBIAN_SUITE:-bookworm}"
mirror="${MOAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
docker_bin="${DOCKER:-docker}"
# The packages every template needs: git for the task repository, socat for the egress relay
# (the sandbox's only way out is a unix socket to the gateway; `--init` uses the
# engine's own), procps/curl so that agents and the demo find the usual tools.
packages="git,ca-certificates,curl,procps,less,openssh-client,xz-utils,socat"

if [[ "${1:-}" != "--force" ]] && "$docker_bin" image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image already present (use --force to rebuild)"
  exit 0
fi

# debootstrap makes device nodes and chroots: only root can. A user of the docker group gets
# the one command to run as root; the image then serves every user of the same daemon.
if [[ $(id -u) -ne 0 ]]; then
  echo "the base image $image is missing, and building it (debootstrap) needs root; as root, run:" >&2
  echo "  ${MOAT_BASE_IMAGE:+MOAT_BASE_IMAGE=$MOAT_BASE_IMAGE }bash $(cd "$(dirname "$0")" && pwd)/build-base-image.sh" >&2
  exit 1
fi

# An administrator's programs live in /usr/sbin, which not every root shell has on its PATH (su).
find_debootstrap() {
  command -v debootstrap && return
  for candidate in /usr/sbin/debootstrap /sbin/debootstrap; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
  done
}
debootstrap_bin="$(find_debootstrap || true)"
if [[ -z "$debootstrap_bin" ]]; then
  echo "debootstrap is missing; installing it from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  debootstrap_bin=/usr/sbin/debootstrap
fi

root="$(mktemp -d /var/tmp/moat-rootfs.XXXXXX)"
cleanup() { rm -rf --one-file-system "$root"; }
trap cleanup EXIT

echo "debootstrap $suite from $mirror into $root (a few minutes)"
PATH="$PATH:/usr/sbin:/sbin" "$debootstrap_bin" --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# Trim what no sandbox needs, so the image stays small and quick to create containers from.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
printf 'deb %s %s main\n' "$mirror" "$suite" >"$root/etc/apt/sources.list"

echo "importing as $image"
tar -C "$root" -c . | "$docker_bin" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "moat base image: debootstrap $suite minbase" \
  - "$image" >/dev/null
"$docker_bin" image tag "$image" "$image" >/dev/null
echo "built $image"
