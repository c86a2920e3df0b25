#!/usr/bin/env bash
# Makes gVisor (isolation: gvisor) available to moat on this machine: Debian's runsc package, and
# a Docker runtime named "runsc" in /etc/docker/daemon.json. Idempotent and conservative:
# - every key already in daemon.json is kept (it is merged, never rewritten from scratch);
# - dockerd is told to reload (SIGHUP, which reloads runtimes without touching running
#   containers) only when the runtime was added; it is never restarted.
# runsc runs with --network=none: moat's sandboxes have no network of their own (egress goes
# through moat's bridge), and runsc refuses a network in the host's root namespace anyway.
set -euo pipefail

say() { printf 'setup-gvisor: %s\n' "$*" >&2; }
DAEMON_JSON=${MOAT_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}

if ! command -v runsc >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    say "runsc is missing; as root: apt-get install runsc (then run this again)"
    exit 1
  fi
  say "installing runsc from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 runsc >/dev/null
fi
RUNSC=$(command -v runsc)

if [[ $(id -u) -ne 0 && ! -w "$(dirname "$DAEMON_JSON")" ]]; then
  say "cannot register runsc with Docker as $(id -un); as root: bash scripts/setup-gvisor.sh"
  exit 1
fi
mkdir -p "$(dirname "$DAEMON_JSON")"
# Node is moat's own runtime, so it is there; it merges the JSON safely (no sed on JSON).
added=$(
  node - "$DAEMON_JSON" "$RUNSC" <<'JS'
const fs = require('node:fs');
const [file, runsc] = process.argv.slice(2);
let config = {};
try {
  config = JSON.parse(fs.readFileSync(file, 'utf8'));
} catch (error) {
  if (error.code !== 'ENOENT') {
    console.error(`setup-gvisor: ${file} is not valid JSON (${error.message}); fix it by hand, nothing was changed`);
    process.exit(1);
  }
}
const wanted = { path: runsc, runtimeArgs: ['--network=none'] };
const have = config.runtimes?.runsc;
if (have && JSON.stringify(have) === JSON.stringify(wanted)) {
  console.log('no');
  process.exit(0);
}
if (have) {
  // Someone else's runsc entry: keep it, moat only needs --network=none in it.
  console.error(`setup-gvisor: ${file} already has a runsc runtime that differs (${JSON.stringify(have)}); not changed`);
  console.log('no');
  process.exit(0);
}
config.runtimes = { ...(config.runtimes ?? {}), runsc: wanted };
const tmp = `${file}.moat-tmp`;
fs.writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 });
fs.renameSync(tmp, file);
console.log('yes');
JS
)

if [[ $added == yes ]]; then
  pid=$(pidof dockerd || true)
  if [[ -z $pid ]]; then
    say "registered runsc in $DAEMON_JSON; dockerd is not running (it reads it when it starts)"
  else
    say "registered runsc in $DAEMON_JSON; telling dockerd ($pid) to reload it (SIGHUP, no restart)"
    kill -HUP $pid
    for _ in $(seq 1 20); do
      docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' && break
      sleep 0.5
    done
  fi
fi
if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
  say "gVisor ready: docker run --runtime runsc --network none …"
else
  say "Docker does not list the runsc runtime; check $DAEMON_JSON and dockerd's log"
  exit 1
fi
