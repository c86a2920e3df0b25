#!/usr/bin/env bash
# A "remote" Docker engine for the tests: a second dockerd in a container of the local engine, which
# shares neither moat's filesystem nor its network namespace. Its API is published on loopback
# (tcp://127.0.0.1:23750, plain HTTP: loopback only). Idempotent; `stop` removes it (its volume too).
#   bash scripts/setup-remote-engine.sh        # build, start, load the images moat needs
#   bash scripts/setup-remote-engine.sh stop
# `--privileged` fails on hosts without CAP_SYS_RESOURCE; the capabilities below are what dockerd
# needs. The container carries no moat.task label, so the suite's leak check never counts it.
set -euo pipefail
NAME=moat-remote-engine
IMAGE=moat-remote-engine:bookworm
PORT=${MOAT_REMOTE_PORT:-23750}
say() { printf 'remote-engine: %s\n' "$*" >&2; }

if [[ ${1:-} == stop ]]; then
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm "$NAME-data" >/dev/null 2>&1 || true
  say "removed"
  exit 0
fi

docker image inspect moat-base:bookworm >/dev/null 2>&1 || { say "build the base image first: bash scripts/build-base-image.sh"; exit 1; }
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "building $IMAGE (Debian's docker.io and iptables)"
  docker build -q -t "$IMAGE" --label moat.remote-engine=1 - >/dev/null <<'DOCKERFILE'
FROM moat-base:bookworm
USER root
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["dockerd", "--host=tcp://0.0.0.0:2375", "--host=unix:///var/run/docker.sock", "--storage-driver=overlay2", "--tls=false"]
DOCKERFILE
fi

remote() { DOCKER_HOST=tcp://127.0.0.1:$PORT docker "$@"; }
if [[ $(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null) != true ]]; then
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  say "starting $NAME on 127.0.0.1:$PORT"
  docker run -d --name "$NAME" --label moat.remote-engine=1 \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    -v /sys/fs/cgroup:/sys/fs/cgroup --cgroupns host \
    -v "$NAME-data:/var/lib/docker" \
    -p "127.0.0.1:$PORT:2375" "$IMAGE" >/dev/null
fi
for _ in $(seq 1 60); do remote info >/dev/null 2>&1 && break; sleep 1; done
remote info >/dev/null 2>&1 || { say "the engine did not come up:"; docker logs --tail 20 "$NAME" >&2; exit 1; }

# The images moat needs, when the remote engine lacks them (or holds an older build).
for image in moat-base:bookworm; do
  local_id=$(docker image inspect -f '{{.Id}}' "$image")
  if [[ $(remote image inspect -f '{{.Id}}' "$image" 2>/dev/null) != "$local_id" ]]; then
    say "loading $image"
    docker save "$image" | remote load -q >/dev/null
  fi
done
say "ready: DOCKER_HOST=tcp://127.0.0.1:$PORT"
