# shellcheck shell=bash
# Shared by the scripts that build Sluice's tools from pinned Go modules (build-kube.sh, build-deploy-tools.sh,
# build-node-components.sh).
# Source it after setting `script_name` (the prefix of messages) and `cache_root`.
: "${script_name:?set script_name before sourcing go-build.sh}" "${cache_root:?set cache_root before sourcing go-build.sh}"

say() { echo "$script_name: $*" >&2; }
die() {
  echo "$script_name: error: $*" >&2
  exit 1
}

# The version a go.mod requires of a module, whether in a one-line `require` or a require block.
module_version() {
  awk -v module="$2" '{ sub(/^require[ \t]+/, "") } $1 == module { print $2; exit }' "$1"
}

# module_key MODULE_DIR VERSION: the cache directory name of a build from MODULE_DIR: VERSION, then a hash of the
# module's go.mod, go.sum (when it has one) and .go files, so that a changed dependency (tests/unit/test_go_tools.py
# keeps the tools' shared dependencies at one version) or a changed main package of ours rebuilds instead of keeping
# a binary built from the old ones.
module_key() {
  local files=("$1/go.mod")
  [ ! -f "$1/go.sum" ] || files+=("$1/go.sum")
  files+=("$1"/*.go)
  echo "$2-$(cat "${files[@]}" | sha256sum | cut -c1-12)"
}

# Whether COMMAND... runs and prints LINE as one of its lines. The output is read whole before matching: with
# `cmd | grep -q` under pipefail, grep's early exit can kill cmd with SIGPIPE and fail the check at random.
prints_line() {
  local line=$1 output
  shift
  output=$(timeout 30 "$@" 2>/dev/null) || return 1
  grep -qxF -- "$line" <<<"$output"
}

# require_go GO_MOD WHAT: put Go on PATH and check it is at least the version GO_MOD declares; WHAT names what
# is being built, for the error messages.
require_go() {
  local go_needed go_have
  go_needed=$(awk '$1 == "go" { print $2; exit }' "$1")
  # The official Go tarball installs to /usr/local/go, often not on a non-login shell's PATH.
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    PATH="/usr/local/go/bin:$PATH"
  fi
  if ! command -v go >/dev/null 2>&1; then
    die "the Go toolchain is needed to build $2, and 'go' is not on PATH.
  Install Go >= $go_needed (the version $1 declares) from https://go.dev/dl/ and put its bin/ on PATH.
  Debian 12's 'golang' package is Go 1.19: too old."
  fi
  go_have=$(go env GOVERSION)
  go_have=${go_have#go}
  if [ "$(printf '%s\n%s\n' "$go_needed" "$go_have" | sort -V | head -n 1)" != "$go_needed" ]; then
    die "Go $go_have is too old to build $2: $1 requires Go >= $go_needed.
  Install a newer Go from https://go.dev/dl/ (Debian 12's 'golang' package is Go 1.19), or with Go >= 1.21 run
  this script with GOTOOLCHAIN=go$go_needed to have go fetch that toolchain from the module proxy."
  fi
}

# take_build_lock NAME: one build at a time per cache (concurrent runs wait their turn), and clean the temp dirs a
# killed build left in the given cache subdirectories. Temp dirs made by new_build_dir are removed on exit.
tmp_dirs=()
take_build_lock() {
  local name=$1 dir
  shift
  mkdir -p "$cache_root"
  exec 9>"$cache_root/.$name.lock"
  if ! flock -n 9; then
    say "another build holds $cache_root/.$name.lock; waiting for it"
    flock 9
  fi
  for dir in "$@"; do
    mkdir -p "$cache_root/$dir"
    rm -rf "${cache_root:?}/$dir"/.build-*
  done
  trap 'cleanup_build_dirs' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

cleanup_build_dirs() { [ ${#tmp_dirs[@]} -eq 0 ] || rm -rf "${tmp_dirs[@]}"; }

# new_build_dir SUBDIR: sets `build_dir` to a fresh temp dir in the cache's SUBDIR (removed on exit unless
# installed). Not meant for $(...): the temp dir must be recorded in this shell.
new_build_dir() {
  build_dir=$(mktemp -d "$cache_root/$1/.build-XXXXXX")
  chmod 755 "$build_dir"
  tmp_dirs+=("$build_dir")
}

# go_build MODULE_DIR OUT_DIR LDFLAGS PACKAGE...: a static, path-independent build with the module's own
# go.mod/go.sum as they are (-mod=readonly), whatever the caller's GOFLAGS or go.work say.
go_build() {
  local module=$1 out=$2 ldflags=$3
  shift 3
  (cd "$module" && CGO_ENABLED=0 GOWORK=off GOFLAGS='' go build -mod=readonly -trimpath -buildvcs=false \
    -ldflags "$ldflags" -o "$out/" "$@")
}

# kube_ldflags MODULE_DIR VERSION: the -ldflags that stamp Kubernetes VERSION into the binaries built from
# MODULE_DIR, as Kubernetes' own build (hack/lib/version.sh) does; without them every binary reports v0.0.0 and
# kubeadm derives a wrong minimum control-plane version from its own. buildDate is the release's module time, so
# the same sources give the same binaries. Needs go on PATH (require_go).
kube_ldflags() {
  local module=$1 version=$2 build_date major minor package ldflags="-s -w"
  build_date=$(cd "$module" && GOWORK=off GOFLAGS='' go list -mod=readonly -m \
    -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes) || return 1
  minor=${version#v*.}
  minor=${minor%%.*}
  major=${version#v}
  major=${major%%.*}
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $package.gitVersion=$version -X $package.gitMajor=$major -X $package.gitMinor=$minor"
    ldflags+=" -X $package.gitTreeState=clean -X $package.buildDate=$build_date"
  done
  echo "$ldflags"
}

# A build lands in a temp dir next to its final place and is renamed there once it reports the right version.
install_dir() {
  local tmp=$1 final=$2
  rm -rf "$final"
  mv "$tmp" "$final"
}
