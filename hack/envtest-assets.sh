#!/usr/bin/env bash
# Builds kube-apiserver and etcd for controller-runtime's envtest from Go
# module sources, because setup-envtest's prebuilt tarballs need internet we
# don't have; only the Go module proxy is reachable.
#
#   export KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"
#   hack/envtest-assets.sh node   # also kubelet, kube-controller-manager,
#                                 # kube-scheduler, kube-proxy (hack/cluster)
#
# stdout carries only the assets directory so the line above works; all
# progress goes to stderr. Versions can be overridden via the environment.
#
# Binaries are also kept in $HEROKUNIX_CACHE (~/.cache/herokunix by default),
# outside the clone, so a fresh clone (CI) copies them instead of rebuilding.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"   # matches k8s.io/* v0.37.x pinned by controller-runtime v0.25
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"  # k8s 1.37 is built against etcd 3.7.x

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/bin/k8s/$K8S_VERSION"
build="$root/bin/.build"
log() { echo "envtest-assets: $*" >&2; }

cache="${HEROKUNIX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herokunix}/k8s/$K8S_VERSION"

k8s_bins=(kube-apiserver)
if [[ "${1:-}" == node ]]; then
  k8s_bins+=(kubelet kube-controller-manager kube-scheduler kube-proxy)
fi

mkdir -p "$out"
# from_cache <name>: take a binary built by another clone; fails when absent.
from_cache() {
  [[ -x "$out/$1" ]] && return 0
  [[ -x "$cache/$1" ]] || return 1
  cp -f "$cache/$1" "$out/.$1.tmp" && mv -f "$out/.$1.tmp" "$out/$1"
}
# to_cache <name>: keep a fresh binary for the next clone (best effort).
to_cache() {
  mkdir -p "$cache" 2>/dev/null &&
    cp -f "$out/$1" "$cache/.$1.tmp" 2>/dev/null && mv -f "$cache/.$1.tmp" "$cache/$1" || true
}

missing=()
for b in "${k8s_bins[@]}"; do from_cache "$b" || missing+=("$b"); done
from_cache etcd || true
if [[ ${#missing[@]} -eq 0 && -x "$out/etcd" ]]; then
  log "reusing cached binaries in $out"
  echo "$out"
  exit 0
fi

# A go.work elsewhere must not pull these throwaway modules into a workspace;
# static binaries keep the cache usable regardless of the host's libc.
export GOWORK=off CGO_ENABLED=0

# Compile into a temp name and rename, so an interrupted run never leaves a
# half-written binary that the cache check above would trust.
gobuild() { # <module dir> <output name> <package> [go build args...]
  local dir=$1 name=$2 pkg=$3; shift 3
  log "building $name (this takes several minutes the first time)"
  rm -f "$out/.$name.tmp"  # go build refuses to overwrite a leftover partial file
  # -mod=mod lets go fill in go.sum/indirect requirements of the generated module.
  (cd "$dir" && go build -mod=mod -trimpath "$@" -o "$out/.$name.tmp" "$pkg")
  mv -f "$out/.$name.tmp" "$out/$name"
}

if [[ ${#missing[@]} -gt 0 ]]; then
  dir="$build/kube-apiserver-$K8S_VERSION"
  mkdir -p "$dir"
  echo "module envtest/kubeapiserver" >"$dir/go.mod"
  log "downloading k8s.io/kubernetes@v$K8S_VERSION"
  gomod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$gomod" ]] || { log "could not locate go.mod of k8s.io/kubernetes@v$K8S_VERSION"; exit 1; }
  # k8s.io/kubernetes requires its staging repos at v0.0.0 and points them at
  # ./staging via replace, which is ignored outside its own repo; map them to
  # the published v0.<minor>.<patch> tags instead.
  staging_version="v0.${K8S_VERSION#*.}"
  {
    echo "module envtest/kubeapiserver"
    grep -E '^(go|godebug) ' "$gomod"  # keep upstream's language/runtime defaults
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    awk '/^require[[:space:]]*\(/{r=1; next} r && /^\)/{r=0}
         r && $1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" |
      while read -r m; do echo "replace $m => $m $staging_version"; done
  } >"$dir/go.mod.new"
  mv -f "$dir/go.mod.new" "$dir/go.mod"
  # Without these, /version reports v0.0.0-master and envtest/clients that
  # gate on the server version misbehave.
  minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  ldflags=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=${K8S_VERSION%%.*}"
    ldflags+=" -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  # One go build for all of them, so packages they share compile once.
  log "building ${missing[*]} (this takes several minutes the first time)"
  tmp="$out/.build.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  pkgs=()
  for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$dir" && go build -mod=mod -trimpath -ldflags "-s -w$ldflags" -o "$tmp/" "${pkgs[@]}")
  for b in "${missing[@]}"; do mv -f "$tmp/$b" "$out/$b"; to_cache "$b"; done
  rm -rf "$tmp"
fi

if [[ ! -x "$out/etcd" ]]; then
  dir="$build/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  # etcd's own main lives in go.etcd.io/etcd/server/v3 but its go.mod relies on
  # local replaces, so wrap etcdmain in a module we control instead.
  printf 'module envtest/etcd\n\ngo 1.25.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' \
    "$ETCD_VERSION" >"$dir/go.mod"
  cat >"$dir/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  gobuild "$dir" etcd . -ldflags "-s -w"
  to_cache etcd
fi

log "binaries ready in $out"
echo "$out"
