#!/usr/bin/env bash
# Build the control plane Sluice's k8s tests run against: kube-apiserver, kube-controller-manager and kubectl
# from the Go module in tools/kube, and etcd + etcdctl from tools/etcd (the etcd kubeadm runs, also the kind node's:
# scripts/build-node-components.sh takes these binaries from here). No registry ships these binaries here,
# so they are compiled (with CGO off, version-stamped) from the Go module proxy's sources, pinned by the
# modules' go.mod/go.sum. They go into a per-machine cache, keyed by version and by a hash of go.mod and go.sum:
#
#   ${SLUICE_CACHE_DIR:-~/.cache/sluice}/kube/<version>-<hash>/bin/{kube-apiserver,kube-controller-manager,kubectl}
#   ${SLUICE_CACHE_DIR:-~/.cache/sluice}/etcd/<etcd version>-<hash>/bin/{etcd,etcdctl}
#
# Idempotent: binaries that exist and report the pinned version are kept (a re-run takes under a second).
# Concurrent runs take turns on a lock; each build writes into a temp dir that is renamed into place only when
# complete. A cold build takes several minutes and a few GB of Go build cache.
#
# Usage: scripts/build-kube.sh [--rebuild]
# Prints one NAME=PATH line per binary on stdout; progress goes to stderr.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kube_module=$repo_root/tools/kube
etcd_module=$repo_root/tools/etcd
cache_root=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}

# shellcheck source=scripts/lib/args.sh
source "$repo_root/scripts/lib/args.sh"
rebuild=false
parse_rebuild_arg build-kube "$@"

script_name=build-kube
# shellcheck source=scripts/lib/go-build.sh
source "$repo_root/scripts/lib/go-build.sh"

kube_version=$(module_version "$kube_module/go.mod" k8s.io/kubernetes)
etcd_version=$(module_version "$etcd_module/go.mod" go.etcd.io/etcd/server/v3)
[ -n "$kube_version" ] || die "no k8s.io/kubernetes requirement in $kube_module/go.mod"
[ -n "$etcd_version" ] || die "no go.etcd.io/etcd/server/v3 requirement in $etcd_module/go.mod"
kube_dir=$cache_root/kube/$(module_key "$kube_module" "$kube_version")
etcd_dir=$cache_root/etcd/$(module_key "$etcd_module" "$etcd_version")
kube_binaries=(kube-apiserver kube-controller-manager kubectl)
etcd_binaries=(etcd etcdctl)

# Whether DIR/bin holds the Kubernetes binaries and each reports version VERSION.
kube_ok() {
  local bin=$1/bin version=$2
  prints_line "Kubernetes $version" "$bin/kube-apiserver" --version &&
    prints_line "Kubernetes $version" "$bin/kube-controller-manager" --version &&
    prints_line "Client Version: $version" "$bin/kubectl" version --client=true
}

# Whether DIR/bin holds etcd and etcdctl of version VERSION (given with its leading "v").
etcd_ok() {
  local bin=$1/bin version=${2#v}
  prints_line "etcd Version: $version" "$bin/etcd" --version &&
    prints_line "etcdctl version: $version" "$bin/etcdctl" version
}

print_paths() {
  local name
  for name in "${kube_binaries[@]}"; do echo "$name=$kube_dir/bin/$name"; done
  for name in "${etcd_binaries[@]}"; do echo "$name=$etcd_dir/bin/$name"; done
}

if ! $rebuild && kube_ok "$kube_dir" "$kube_version" && etcd_ok "$etcd_dir" "$etcd_version"; then
  print_paths
  exit 0
fi

# --- a build is needed -----------------------------------------------------------------------------------------
require_go "$kube_module/go.mod" "Kubernetes $kube_version and etcd $etcd_version"
take_build_lock build-kube kube etcd

if $rebuild || ! kube_ok "$kube_dir" "$kube_version"; then
  started=$SECONDS
  say "building kube-apiserver, kube-controller-manager and kubectl $kube_version with $(go version | cut -d' ' -f3)"
  say "(several minutes on a cold Go build cache)"
  new_build_dir kube
  tmp=$build_dir
  ldflags=$(kube_ldflags "$kube_module" "$kube_version") || die "could not read k8s.io/kubernetes from $kube_module"
  go_build "$kube_module" "$tmp/bin" "$ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
  kube_ok "$tmp" "$kube_version" ||
    die "the fresh build in $tmp/bin does not report version $kube_version (kube-apiserver --version: \
$("$tmp/bin/kube-apiserver" --version 2>&1 | head -n 1))"
  install_dir "$tmp" "$kube_dir"
  say "built Kubernetes $kube_version in $((SECONDS - started)) s"
fi

if $rebuild || ! etcd_ok "$etcd_dir" "$etcd_version"; then
  started=$SECONDS
  say "building etcd and etcdctl $etcd_version"
  new_build_dir etcd
  tmp=$build_dir
  # etcd's version is a constant in its sources; nothing to stamp.
  go_build "$etcd_module" "$tmp/bin" "-s -w" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3
  # go names a binary whose package path ends in a major version (/v3) after the element before it.
  mv "$tmp/bin/server" "$tmp/bin/etcd"
  etcd_ok "$tmp" "$etcd_version" ||
    die "the fresh build in $tmp/bin does not report etcd $etcd_version (etcd --version: \
$("$tmp/bin/etcd" --version 2>&1 | head -n 1))"
  install_dir "$tmp" "$etcd_dir"
  say "built etcd $etcd_version in $((SECONDS - started)) s"
fi

print_paths
