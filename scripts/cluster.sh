#!/usr/bin/env bash
# A one-node Kubernetes 1.20 cluster on loopback, built from Debian 12's `kubernetes` source package,
# for testing moat's Kubernetes engine for real (issue 19). Nothing is pulled from a registry: the
# binaries come from Debian's sources, the pause image is compiled here on top of moat-base.
#
#   bash scripts/cluster.sh [start]   build (cached) and start; idempotent; last stdout line = kubeconfig
#   bash scripts/cluster.sh stop      stop all it started, remove what it made, restore host settings
#   bash scripts/cluster.sh status    say what runs (exit 0 only when the node is Ready)
#   bash scripts/cluster.sh build     only build (or find) the cached binaries
#   bash scripts/cluster.sh kubelet stop|start   fault tests: the node goes NotReady, and back (Ready, untainted)
#
# Paths: binaries in /var/cache/moat-k8s/<source-version>-<recipe-hash>/bin (outside the clone, kept by
# stop); state in /var/lib/moat-k8s and /run/moat-k8s; logs in /var/log/moat-k8s. See docs/kubernetes.md.
set -euo pipefail

CACHE=${MOAT_K8S_CACHE:-/var/cache/moat-k8s}
STATE=/var/lib/moat-k8s
RUN=/run/moat-k8s
LOGS=/var/log/moat-k8s
SELF=$(readlink -f "${BASH_SOURCE[0]}")
source "${SELF%/*}/lib/close-inherited-fds.sh"

log() { echo "cluster: $*" >&2; }
die() {
  echo "cluster: error: $1" >&2
  [[ -z ${2:-} ]] || echo "cluster: hint: $2" >&2
  exit 1
}

apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

# --- sources -----------------------------------------------------------------------------------------
# The deb-src line lives in a private apt configuration under the cache (its own source list and
# lists directory), so the host's apt sources are never edited and stop has nothing to undo there.
# The mirror and keyring are the ones the host already uses for its release's main suite.
APT_DIR=$CACHE/apt
apt_private() {
  apt-get -o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
    -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" "$@"
}
apt_cache_private() {
  apt-cache -o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
    -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" "$@"
}
source_version() {
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  if [[ ! -s $APT_DIR/sources.list ]] || [[ -z $(find "$APT_DIR/lists" -name '*Sources' -mtime -7 2>/dev/null) ]]; then
    local codename mirror keyring
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    mirror=$(apt-cache policy | awk -v s="$codename/main" '$3 == s && /Packages/ { print $2; exit }')
    [[ -n $mirror ]] || die "no apt mirror serves $codename/main on this host" "add Debian 12 (bookworm) to the apt sources"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    echo "deb-src [signed-by=$keyring] $mirror $codename main" >"$APT_DIR/sources.list"
    apt_private update >&2 || die "apt-get update of the deb-src list failed" "check the network path to $mirror"
  fi
  apt_cache_private showsrc kubernetes | awk '/^Version:/ { print $2 }' | sort -V | tail -1
}

# --- build recipe begin (this block's text is part of the cache key) ----------------------------------
# GOPATH mode, as Debian's debian/rules builds it. The vendored modern-go/reflect2 1.0.1 crashes
# under Go >= 1.18 (it reads runtime internals that moved); Debian's 1.0.2 is a drop-in fix.
# nice/ionice keep a 2-core machine usable for others while it builds; how many packages compile at
# once ($K8S_BUILD_JOBS, set outside the recipe: it changes no byte of the output) is up to the caller.
build_recipe() { # $1 = dsc, $2 = work dir, $3 = bin dir
  local dsc=$1 work=$2 bin=$3
  rm -rf "$work" && mkdir -p "$work"
  dpkg-source --no-check -x "$dsc" "$work/src" >&2
  rm -rf "$work/src/vendor/github.com/modern-go/reflect2"
  cp -a /usr/share/gocode/src/github.com/modern-go/reflect2 "$work/src/vendor/github.com/modern-go/reflect2"
  mkdir -p "$work/src/.go/src/k8s.io"
  ln -sfn ../../.. "$work/src/.go/src/k8s.io/kubernetes"
  (
    cd "$work/src"
    export GOPATH=$work/src/.go GO111MODULE=off GOFLAGS=-p=$K8S_BUILD_JOBS HOME=$work/home
    export PATH=/usr/lib/go/bin:$PATH
    nice -n 19 ionice -c 3 make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kubectl" >&2
  )
  mkdir -p "$bin.tmp"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    cp "$work/src/_output/bin/$b" "$bin.tmp/$b"
  done
  mv "$bin.tmp" "$bin"
}
# --- build recipe end ---------------------------------------------------------------------------------

# Parallel compiles: all cores by default (CI has the machine to itself); MOAT_K8S_BUILD_JOBS=1 on a
# machine shared with others.
K8S_BUILD_JOBS=${MOAT_K8S_BUILD_JOBS:-$(nproc)}
recipe_hash() { sed -n '/^# --- build recipe begin/,/^# --- build recipe end/p' "$SELF" | sha256sum | cut -c1-12; }

# Prints the bin directory, building it when the cache has none for this source version and recipe.
ensure_binaries() {
  apt_install golang-go rsync jq make gcc libc6-dev dpkg-dev golang-github-modern-go-reflect2-dev ca-certificates
  local ver key bin
  ver=$(source_version)
  [[ -n $ver ]] || die "Debian's sources list no 'kubernetes' source package" "this needs Debian 12 (bookworm) sources"
  key="$ver-$(recipe_hash)"
  bin=$CACHE/$key/bin
  if [[ -x $bin/kubelet ]]; then
    echo "$bin"
    return 0
  fi
  mkdir -p "$CACHE/src"
  (cd "$CACHE/src" && { ls kubernetes_"$ver".dsc >/dev/null 2>&1 || apt_private source --download-only "kubernetes=$ver" >&2; })
  log "building Kubernetes $ver from source (12-30 min on 2 cores); log: $CACHE/$key/build.log"
  mkdir -p "$CACHE/$key"
  local t0=$SECONDS
  if ! build_recipe "$CACHE/src/kubernetes_$ver.dsc" "$CACHE/$key/work" "$bin" 2>"$CACHE/$key/build.log"; then
    tail -20 "$CACHE/$key/build.log" >&2
    die "building Kubernetes $ver failed" "see $CACHE/$key/build.log"
  fi
  rm -rf "$CACHE/$key/work"
  log "built in $((SECONDS - t0))s"
  echo "$((SECONDS - t0))" >"$CACHE/$key/build-seconds"
  echo "$bin"
}


# --- host settings -------------------------------------------------------------------------------------
# A kubelet rewrites these kernel settings at start (container_manager_linux.go setupKernelTunables;
# the bridge ones come from dockershim's network plugin). They are recorded once, before anything runs,
# and put back by stop. --make-iptables-util-chains=false keeps the kubelet's KUBE-* chains away; stop
# still removes any KUBE-* chain that was not there before, and verifies.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables)
# Paths a 1.20 kubelet writes whatever its flags say: pod logs, and the device-plugin socket directory.
FIXED_DIRS=(/var/log/pods /var/log/containers /var/lib/kubelet)
HOST_RECORD=$STATE/host-before # written once per cluster life; stop consumes it

kube_chains() { # every KUBE-* chain, as "<binary> <table> <chain>"
  local b t
  for b in iptables ip6tables; do
    command -v "$b" >/dev/null || continue
    for t in filter nat mangle raw; do
      "$b" -w -t "$t" -S 2>/dev/null | awk -v b="$b" -v t="$t" '$1 == "-N" && $2 ~ /^KUBE-/ { print b, t, $2 }'
    done
  done
}

record_host() {
  [[ -s $HOST_RECORD ]] && return 0 # a cluster that died without stop: keep the first, true record
  mkdir -p "$STATE"
  {
    for k in "${SYSCTLS[@]}"; do
      v=$(sysctl -n "$k" 2>/dev/null) && echo "sysctl $k $v"
    done
    kube_chains | sed 's/^/chain /'
    for d in "${FIXED_DIRS[@]}"; do [[ -e $d ]] && echo "existed $d"; done
    ip link show docker0 >/dev/null 2>&1 && echo "docker0 $(ip -o link show docker0 | awk '{print $2, $3}')"
    echo "end"
  } >"$HOST_RECORD.tmp"
  mv "$HOST_RECORD.tmp" "$HOST_RECORD"
}

restore_host() {
  [[ -s $HOST_RECORD ]] || return 0
  local kind a b c
  while read -r kind a b c; do
    [[ $kind == sysctl ]] || continue
    [[ $(sysctl -n "$a" 2>/dev/null) == "$b" ]] || sysctl -q -w "$a=$b" >/dev/null || log "could not restore $a=$b"
  done <"$HOST_RECORD"
  # Remove KUBE-* chains that were not there before: first the rules jumping to them, then the chains.
  local line bin table chain
  while read -r bin table chain; do
    grep -qx "chain $bin $table $chain" "$HOST_RECORD" && continue
    "$bin" -w -t "$table" -S | awk -v c="$chain" '$1 == "-A" && $2 != c { for (i = 3; i <= NF; i++) if ($i == c) { print; break } }' |
      while read -r line; do
        # shellcheck disable=SC2086 # the rule's own words, as iptables -S printed them
        "$bin" -w -t "$table" ${line/#-A/-D} || true
      done
  done < <(kube_chains)
  while read -r bin table chain; do
    grep -qx "chain $bin $table $chain" "$HOST_RECORD" && continue
    "$bin" -w -t "$table" -F "$chain" 2>/dev/null || true
  done < <(kube_chains)
  while read -r bin table chain; do
    grep -qx "chain $bin $table $chain" "$HOST_RECORD" && continue
    "$bin" -w -t "$table" -X "$chain" 2>/dev/null || true
  done < <(kube_chains)
  # The kubelet writes to fixed paths (FIXED_DIRS): remove them when the cluster made them, else only
  # what it left there.
  for d in "${FIXED_DIRS[@]}"; do
    if grep -qx "existed $d" "$HOST_RECORD"; then
      find "$d" -mindepth 1 -maxdepth 1 -newer "$HOST_RECORD" -exec rm -rf {} + 2>/dev/null || true
    else
      rm -rf "$d"
    fi
  done
}

verify_host() { # prints each difference from the record; exit status 1 when there is one
  [[ -s $HOST_RECORD ]] || return 0
  local bad=0 kind a b c
  while read -r kind a b c; do
    case $kind in
      sysctl) [[ $(sysctl -n "$a" 2>/dev/null) == "$b" ]] || { log "not restored: $a is $(sysctl -n "$a"), was $b"; bad=1; } ;;
      docker0) ip link show docker0 >/dev/null 2>&1 || { log "docker0 is gone"; bad=1; } ;;
    esac
  done <"$HOST_RECORD"
  while read -r a b c; do
    grep -qx "chain $a $b $c" "$HOST_RECORD" || { log "left over: $a -t $b chain $c"; bad=1; }
  done < <(kube_chains)
  return $bad
}

# --- processes -----------------------------------------------------------------------------------------
# Every daemon runs in its own session with a pid file in $RUN; stop ends exactly those pids.
COMPONENTS_START=(containerd dockerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet)
alive() { [[ -s $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
spawn() { # name, command...
  local name=$1
  shift
  log "starting $name (log: $LOGS/$name.log)"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}
end_process() { # name: TERM, then KILL after 20 s
  local name=$1 pid i
  [[ -s $RUN/$name.pid ]] || return 0
  pid=$(cat "$RUN/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "$name did not stop on TERM; killing it"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; }
  fi
  rm -f "$RUN/$name.pid"
}
wait_for() { # seconds, what, command...
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  return 1
}
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

# --- configuration ---------------------------------------------------------------------------------------
PKI=$STATE/pki
ETCD_CLIENT=23790
ETCD_PEER=23800
KUBELET_PORT=10250
PAUSE_IMAGE=moat-k8s/pause:bookworm
DOCKER_SOCK=$RUN/docker.sock
kdocker() { docker -H "unix://$DOCKER_SOCK" "$@"; }
api_port() { cat "$RUN/api-port" 2>/dev/null || echo 6443; }
BIN=$(cat "$RUN/bin" 2>/dev/null || true) # the binaries the running cluster was started from
kubectl_admin() { "$BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" --request-timeout=10s "$@"; }

make_pki() {
  [[ -s $PKI/ca.crt ]] && return 0
  mkdir -p "$PKI.tmp" && chmod 700 "$PKI.tmp"
  (
    cd "$PKI.tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=moat-k8s-ca" 2>/dev/null
    sign() { # name, subject, extensions
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 30 -extfile "$1.ext" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
    # The API server's client identity towards the kubelet (exec, logs): system:masters.
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
    # The kubelet is reached by its Hostname address, localhost (see --kubelet-preferred-address-types).
    sign kubelet "/CN=localhost" "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # Bearer tokens: admin (system:masters), the components, and moat-test-nobody with no RBAC binding.
    tok() { openssl rand -hex 24; }
    {
      echo "$(tok),admin,moat-admin,\"system:masters\""
      echo "$(tok),system:kube-controller-manager,moat-kcm"
      echo "$(tok),system:kube-scheduler,moat-scheduler"
      echo "$(tok),system:node:localhost,moat-node,\"system:nodes\""
      echo "$(tok),moat-test-nobody,moat-nobody"
    } >tokens.csv
    chmod 600 ./*.key tokens.csv
  )
  mv "$PKI.tmp" "$PKI"
}

write_kubeconfig() { # file, user (as in tokens.csv)
  local file=$1 user=$2 token
  token=$(awk -F, -v u="$user" '$2 == u { print $1 }' "$PKI/tokens.csv")
  (umask 077 && cat >"$file.tmp") <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: moat-k8s
  cluster:
    server: https://127.0.0.1:$(api_port)
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    token: $token
contexts:
- name: moat-k8s
  context: {cluster: moat-k8s, user: $user}
current-context: moat-k8s
KCFG
  mv "$file.tmp" "$file"
}

# An OCI runtime wrapper: this host lacks CAP_SYS_RESOURCE, so runc cannot set the negative
# oom_score_adj the kubelet asks for (pause: -998, Guaranteed pods: -997) and fails the container
# ("can't get final child's PID from pipe: EOF"). The wrapper drops a negative oomScoreAdj from the
# bundle's config.json, then runs runc unchanged. Only the cluster's own dockerd uses it. It runs
# for every runc call (each exec's too), so it is dash, not bash, and jq starts only for a bundle
# whose config holds a negative oomScoreAdj (containerd writes it compact: "oomScoreAdj":-998):
# the node's own cost per call stays close to a real node's.
write_runtime_wrapper() {
  cat >"$STATE/runc-wrapper" <<'WRAP'
#!/bin/sh
bundle=
prev=
for arg in "$@"; do
  case $prev in --bundle | -b) bundle=$arg ;; esac
  case $arg in --bundle=*) bundle=${arg#--bundle=} ;; esac
  prev=$arg
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ] && grep -q '"oomScoreAdj":-' "$bundle/config.json" &&
  jq -e '(.process.oomScoreAdj // 0) < 0' "$bundle/config.json" >/dev/null; then
  jq -c 'del(.process.oomScoreAdj)' "$bundle/config.json" >"$bundle/config.json.moat" && mv "$bundle/config.json.moat" "$bundle/config.json"
fi
exec runc "$@"
WRAP
  chmod 755 "$STATE/runc-wrapper"
}

start_docker() {
  alive dockerd && kdocker version >/dev/null 2>&1 && return 0
  write_runtime_wrapper
  mkdir -p "$RUN/containerd" "$STATE/containerd"
  # Its own containerd: dockerd would otherwise join the system's (/run/containerd), shared with the
  # dockerd every other test uses.
  cat >"$RUN/containerd.toml" <<TOML
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$RUN/containerd/containerd.sock"
[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
TOML
  alive containerd || spawn containerd containerd --config "$RUN/containerd.toml"
  wait_for 30 containerd test -S "$RUN/containerd/containerd.sock" || die "containerd did not start" "see $LOGS/containerd.log"
  cat >"$RUN/daemon.json" <<JSON
{
  "runtimes": { "moat-k8s-runc": { "path": "$STATE/runc-wrapper" } },
  "default-runtime": "moat-k8s-runc",
  "exec-opts": ["native.cgroupdriver=cgroupfs"]
}
JSON
  # No bridge, no iptables, no masquerading, no ip_forward: docker gives pods loopback only (moat
  # carries their traffic over exec) and the host's network settings stay as they are. It runs in a
  # network namespace of its own because dockerd --bridge=none DELETES a link named docker0 in its
  # namespace (removeDefaultBridgeInterface): on the host's, that is the shared dockerd's bridge.
  # Pods' own namespaces are made by this dockerd, so they hold a loopback interface either way.
  spawn dockerd unshare --net dockerd --config-file "$RUN/daemon.json" --containerd "$RUN/containerd/containerd.sock" \
    --data-root "$STATE/docker" --exec-root "$RUN/docker-exec" --pidfile "$RUN/dockerd.own.pid" \
    -H "unix://$DOCKER_SOCK" --bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
    --cgroup-parent=/moat-k8s --oom-score-adjust=0 --userland-proxy=false
  wait_for 60 dockerd kdocker version || die "the cluster's dockerd did not start" "see $LOGS/dockerd.log"
}

# The pause image is compiled here (a static binary that waits for signals and reaps children) on top
# of moat's base image, which the second dockerd needs anyway for moat's own pods. Nothing is pulled.
load_images() {
  local base=moat-base:bookworm id
  id=$(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null) ||
    die "$base is missing from the host's Docker" "build it: bash scripts/build-base-image.sh"
  if [[ $(kdocker image inspect -f '{{.Id}}' "$base" 2>/dev/null) != "$id" ]]; then
    log "loading $base into the cluster's dockerd"
    docker save "$base" | kdocker load >&2
  fi
  kdocker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
  local ctx=$RUN/pause-build
  mkdir -p "$ctx"
  cat >"$ctx/pause.c" <<'C'
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
static void quit(int sig) { (void)sig; _exit(0); }
int main(void) {
  struct sigaction term = {.sa_handler = quit}, chld = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &term, NULL) || sigaction(SIGTERM, &term, NULL) || sigaction(SIGCHLD, &chld, NULL)) return 1;
  for (;;) pause();
}
C
  cc -static -O2 -o "$ctx/pause" "$ctx/pause.c"
  printf 'FROM %s\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' "$base" >"$ctx/Dockerfile"
  kdocker build -q -t "$PAUSE_IMAGE" "$ctx" >&2
  rm -rf "$ctx"
}

start_control_plane() {
  mkdir -p "$STATE/etcd" && chmod 700 "$STATE/etcd"
  alive etcd || spawn etcd etcd --name moat-k8s --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "moat-k8s=http://127.0.0.1:$ETCD_PEER"
  wait_for 30 etcd curl -fsS "http://127.0.0.1:$ETCD_CLIENT/health" || die "etcd did not start" "see $LOGS/etcd.log"

  if ! alive kube-apiserver; then
    spawn kube-apiserver "$BIN/kube-apiserver" --bind-address=127.0.0.1 --secure-port="$(api_port)" --insecure-port=0 \
      --etcd-servers="http://127.0.0.1:$ETCD_CLIENT" \
      --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
      --token-auth-file="$PKI/tokens.csv" --anonymous-auth=false --authorization-mode=Node,RBAC \
      --enable-admission-plugins=NodeRestriction \
      --service-cluster-ip-range=10.0.0.0/24 \
      --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
      --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=Hostname \
      --profiling=false --v=1
  fi
  wait_for 90 kube-apiserver kubectl_admin get --raw /readyz || die "kube-apiserver did not become ready" "see $LOGS/kube-apiserver.log"

  # --secure-port=0 / --port=0: neither serves anything; the cluster needs no metrics or health ports.
  alive kube-controller-manager || spawn kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/kcm.kubeconfig" --leader-elect=false --controllers='*,-nodeipam' \
    --use-service-account-credentials=true --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --flex-volume-plugin-dir="$STATE/kcm-volume-plugins" --secure-port=0 --port=0 --v=1
  alive kube-scheduler || spawn kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$STATE/scheduler.kubeconfig" \
    --leader-elect=false --secure-port=0 --port=0 --v=1
}

# A CNI plugin that gives a pod an address and no way to use it. A kubelet recreates any sandbox that
# reports no IP (kuberuntime podSandboxChanged), so a pod with only loopback would be killed every
# few seconds. This plugin adds eth0 as an empty bridge device, left DOWN, with a /32 address: the
# kubelet reads the address (dockershim runs `ip addr show dev eth0` in the pod), while the pod has
# no route, no link and no peer. The only way out of a pod stays what moat carries over exec.
write_cni() {
  mkdir -p "$STATE/cni/bin" "$STATE/cni/net.d" "$STATE/cni/cache"
  cat >"$STATE/cni/bin/moat-noroute" <<'CNI'
#!/bin/bash
set -euo pipefail
dir=$(dirname "$(readlink -f "$0")")
case ${CNI_COMMAND:-} in
  ADD)
    cat >/dev/null
    n=$(flock "$dir/ipam.lock" bash -c 'f=$0/ipam.next; n=$(( $(cat "$f" 2>/dev/null || echo 0) + 1 )); echo $n >"$f"; echo $n' "$dir")
    ip=10.244.$((n / 250 % 250)).$((n % 250 + 2))
    nsenter --net="$CNI_NETNS" ip link add "$CNI_IFNAME" type bridge
    nsenter --net="$CNI_NETNS" ip addr add "$ip/32" dev "$CNI_IFNAME"
    printf '{"cniVersion":"0.4.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"version":"4","address":"%s/32","interface":0}]}\n' \
      "$CNI_IFNAME" "$CNI_NETNS" "$ip"
    ;;
  DEL | CHECK) cat >/dev/null ;;
  VERSION) echo '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}' ;;
  *) echo '{"code":4,"msg":"unknown CNI_COMMAND"}'; exit 1 ;;
esac
CNI
  chmod 755 "$STATE/cni/bin/moat-noroute"
  echo '{"cniVersion":"0.4.0","name":"moat-noroute","type":"moat-noroute"}' >"$STATE/cni/net.d/10-moat-noroute.conf"
}

start_kubelet() {
  alive kubelet && return 0
  mkdir -p "$STATE/kubelet" "$STATE/dockershim"
  write_cni
  spawn kubelet "$BIN/kubelet" --kubeconfig="$STATE/kubelet.kubeconfig" \
    --container-runtime=docker --docker-endpoint="unix://$DOCKER_SOCK" \
    --container-runtime-endpoint="unix://$RUN/dockershim.sock" --image-service-endpoint="unix://$RUN/dockershim.sock" \
    --experimental-dockershim-root-directory="$STATE/dockershim" \
    --pod-infra-container-image="$PAUSE_IMAGE" \
    --network-plugin=cni --cni-bin-dir="$STATE/cni/bin,/usr/lib/cni" --cni-conf-dir="$STATE/cni/net.d" --cni-cache-dir="$STATE/cni/cache" \
    --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki" --volume-plugin-dir="$STATE/kubelet/volume-plugins" \
    --cgroup-driver=cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= \
    --hostname-override=localhost --address=127.0.0.1 --port="$KUBELET_PORT" --read-only-port=0 --healthz-port=0 \
    --tls-cert-file="$PKI/kubelet.crt" --tls-private-key-file="$PKI/kubelet.key" \
    --client-ca-file="$PKI/ca.crt" --anonymous-auth=false --authentication-token-webhook=true --authorization-mode=Webhook \
    --fail-swap-on=false --eviction-hard= --resolv-conf= --make-iptables-util-chains=false --oom-score-adj=0 \
    --docker="unix://$DOCKER_SOCK" --volume-stats-agg-period=10s \
    --v=1
}

node_ready() {
  alive kubelet || die "the kubelet exited" "see $LOGS/kubelet.log"
  [[ $(kubectl_admin get node localhost -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

healthy() {
  local c
  for c in "${COMPONENTS_START[@]}"; do alive "$c" || return 1; done
  [[ -s $STATE/admin.kubeconfig ]] && node_ready
}

cmd_start() {
  if healthy; then
    echo "$STATE/admin.kubeconfig"
    return 0
  fi
  local t0=$SECONDS c
  for c in "${COMPONENTS_START[@]}"; do
    if alive "$c"; then
      log "a previous start left part of the cluster running; stopping it first"
      cmd_stop >&2
      break
    fi
  done
  BIN=$(ensure_binaries)
  apt_install etcd-server openssl iptables curl jq gcc libc6-dev containernetworking-plugins iproute2 util-linux
  mkdir -p "$STATE" "$RUN" "$LOGS"
  chmod 700 "$STATE" "$RUN"
  record_host
  local p=6443
  while ! port_free "$p"; do p=$((p + 1)); done
  port_free "$ETCD_CLIENT" && port_free "$ETCD_PEER" && port_free "$KUBELET_PORT" ||
    die "a port the cluster needs is taken ($ETCD_CLIENT, $ETCD_PEER or $KUBELET_PORT)" "stop what listens there (ss -ltnp), or bash scripts/cluster.sh stop"
  echo "$p" >"$RUN/api-port"
  echo "$BIN" >"$RUN/bin"
  make_pki
  write_kubeconfig "$STATE/admin.kubeconfig" admin
  write_kubeconfig "$STATE/nobody.kubeconfig" moat-test-nobody
  write_kubeconfig "$STATE/kcm.kubeconfig" system:kube-controller-manager
  write_kubeconfig "$STATE/scheduler.kubeconfig" system:kube-scheduler
  write_kubeconfig "$STATE/kubelet.kubeconfig" system:node:localhost
  start_docker
  load_images
  start_control_plane
  local t1=$SECONDS
  start_kubelet
  wait_for 120 node node_ready || die "the node did not become Ready" "see $LOGS/kubelet.log"
  log "node Ready $((SECONDS - t1))s after the kubelet started"
  wait_for 60 "default service account" kubectl_admin -n default get serviceaccount default ||
    die "the default service account did not appear" "see $LOGS/kube-controller-manager.log"
  log "cluster up in $((SECONDS - t0))s; admin kubeconfig below, no-permission user: $STATE/nobody.kubeconfig"
  echo "$STATE/admin.kubeconfig"
}

cmd_stop() {
  local c
  for c in kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do end_process "$c"; done
  # The kubelet's containers: removed while their dockerd still runs, so no shim outlives it.
  if alive dockerd && kdocker version >/dev/null 2>&1; then
    local ids
    ids=$(kdocker ps -aq)
    [[ -z $ids ]] || kdocker rm -f $ids >/dev/null 2>&1 || true
  fi
  end_process dockerd
  end_process containerd
  # Shims of the cluster's containerd name its socket path, which nothing else uses.
  local pid
  for pid in $(pgrep -f -- "-address $RUN/containerd/containerd.sock" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  # Mounts under the cluster's directories (pod volumes, overlay layers, netns files), innermost first.
  awk -v s="$STATE/" -v r="$RUN/" 'index($2, s) == 1 || index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  restore_host
  local ok=0
  verify_host || ok=1
  rm -rf "$RUN" "$STATE"
  # The cgroups its dockerd made (--cgroup-parent=/moat-k8s), emptied by the containers' removal.
  find /sys/fs/cgroup/*/moat-k8s -depth -type d -exec rmdir {} + 2>/dev/null || true
  [[ $ok -eq 0 ]] || die "stop left the host different from before (above)" "fix the listed items by hand"
  log "stopped; host settings restored"
}

cmd_status() {
  local c st=0
  for c in "${COMPONENTS_START[@]}"; do
    if alive "$c"; then echo "$c: running (pid $(cat "$RUN/$c.pid"))"; else echo "$c: stopped"; st=1; fi
  done
  if [[ -n $BIN && -s $STATE/admin.kubeconfig ]] && node_ready; then echo "node localhost: Ready"; else echo "node localhost: not Ready"; st=1; fi
  [[ $st -ne 0 ]] || echo "kubeconfig: $STATE/admin.kubeconfig (no-permission user: $STATE/nobody.kubeconfig)"
  return $st
}

# For fault tests (a node that goes NotReady): the running cluster's kubelet alone, stopped and
# started again with exactly start's flags. Its pods' containers live on in the cluster's dockerd
# meanwhile; `kubelet start` returns once the node is Ready again and the node controller has taken
# its not-ready/unreachable taints off (pods schedule again).
node_untainted() {
  [[ -z $(kubectl_admin get node localhost -o jsonpath='{.spec.taints[*].key}' 2>/dev/null | tr ' ' '\n' | grep '^node.kubernetes.io/\(not-ready\|unreachable\)$') ]]
}
cmd_kubelet() {
  [[ -n $BIN && -s $STATE/admin.kubeconfig ]] && alive kube-apiserver || die "the cluster is not running" "start it first: bash scripts/cluster.sh start"
  case ${1:-} in
    stop)
      end_process kubelet
      log "kubelet stopped; the node controller marks the node not Ready after its grace period (40 s)"
      ;;
    start)
      start_kubelet
      wait_for 120 node node_ready || die "the node did not become Ready again" "see $LOGS/kubelet.log"
      wait_for 60 "taints removed" node_untainted || die "the node kept its not-ready taints" "see $LOGS/kube-controller-manager.log"
      log "kubelet started; node Ready and untainted"
      ;;
    *) die "unknown kubelet command '${1:-}'" "use kubelet stop or kubelet start" ;;
  esac
}

case "${1:-start}" in
  build) ensure_binaries ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  kubelet) cmd_kubelet "${2:-}" ;;
  *) die "unknown command '$1'" "use start, stop, status, build or kubelet stop|start" ;;
esac
