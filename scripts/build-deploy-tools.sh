#!/usr/bin/env bash
# Build the tools that install Sluice on a cluster: helm (v3, tools/helm) and kind (tools/kind), from pinned Go
# modules, version-stamped as their own release builds are. No registry ships these binaries here. Cached per
# machine:
#
#   ${SLUICE_CACHE_DIR:-~/.cache/sluice}/helm/<helm version>-<hash of go.mod and go.sum>/bin/helm
#   ${SLUICE_CACHE_DIR:-~/.cache/sluice}/kind/<kind version>-<hash>/bin/kind
#
# Idempotent: binaries that exist and report the pinned version are kept (a re-run takes under a second).
# A cold build takes about a minute (helm) and a few seconds (kind).
#
# Usage: scripts/build-deploy-tools.sh [--rebuild]
# Prints one NAME=PATH line per binary on stdout; progress goes to stderr.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
helm_module=$repo_root/tools/helm
kind_module=$repo_root/tools/kind
cache_root=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}

# shellcheck source=scripts/lib/args.sh
source "$repo_root/scripts/lib/args.sh"
rebuild=false
parse_rebuild_arg build-deploy-tools "$@"

script_name=build-deploy-tools
# shellcheck source=scripts/lib/go-build.sh
source "$repo_root/scripts/lib/go-build.sh"

helm_version=$(module_version "$helm_module/go.mod" helm.sh/helm/v3)
kind_version=$(module_version "$kind_module/go.mod" sigs.k8s.io/kind)
[ -n "$helm_version" ] || die "no helm.sh/helm/v3 requirement in $helm_module/go.mod"
[ -n "$kind_version" ] || die "no sigs.k8s.io/kind requirement in $kind_module/go.mod"
# The Kubernetes minor helm's libraries are built against: helm reports it as the cluster version for
# `helm template` and checks charts' kubeVersion and deprecated APIs against it (its Makefile stamps the same).
client_go=$(module_version "$helm_module/go.mod" k8s.io/client-go)
[ -n "$client_go" ] || die "no k8s.io/client-go requirement in $helm_module/go.mod"
k8s_major=1
k8s_minor=${client_go#v0.}
k8s_minor=${k8s_minor%%.*}
helm_dir=$cache_root/helm/$(module_key "$helm_module" "$helm_version")
kind_dir=$cache_root/kind/$(module_key "$kind_module" "$kind_version")

helm_ok() {
  prints_line "$helm_version" "$1/bin/helm" version --template '{{.Version}}'
}

kind_ok() {
  local output
  output=$(timeout 30 "$1/bin/kind" version 2>/dev/null) || return 1
  [[ $output == "kind $kind_version "* ]]
}

print_paths() {
  echo "helm=$helm_dir/bin/helm"
  echo "kind=$kind_dir/bin/kind"
}

if ! $rebuild && helm_ok "$helm_dir" && kind_ok "$kind_dir"; then
  print_paths
  exit 0
fi

require_go "$helm_module/go.mod" "helm $helm_version and kind $kind_version"
take_build_lock build-deploy-tools helm kind

if $rebuild || ! helm_ok "$helm_dir"; then
  started=$SECONDS
  say "building helm $helm_version (Kubernetes libraries $client_go) with $(go version | cut -d' ' -f3)"
  new_build_dir helm
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for package in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $package.k8sVersionMajor=$k8s_major -X $package.k8sVersionMinor=$k8s_minor"
  done
  go_build "$helm_module" "$build_dir/bin" "$ldflags" helm.sh/helm/v3/cmd/helm
  helm_ok "$build_dir" ||
    die "the fresh build in $build_dir/bin does not report helm $helm_version ($("$build_dir/bin/helm" version 2>&1))"
  install_dir "$build_dir" "$helm_dir"
  say "built helm $helm_version in $((SECONDS - started)) s"
fi

if $rebuild || ! kind_ok "$kind_dir"; then
  started=$SECONDS
  say "building kind $kind_version"
  new_build_dir kind
  # kind's version is a constant in its sources; nothing to stamp.
  go_build "$kind_module" "$build_dir/bin" "-s -w" sigs.k8s.io/kind
  kind_ok "$build_dir" ||
    die "the fresh build in $build_dir/bin does not report kind $kind_version ($("$build_dir/bin/kind" version 2>&1))"
  install_dir "$build_dir" "$kind_dir"
  say "built kind $kind_version in $((SECONDS - started)) s"
fi

print_paths
