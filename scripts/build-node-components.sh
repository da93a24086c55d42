#!/usr/bin/env bash
# Build every binary and container image a kind node of Sluice's Kubernetes version needs, from the package
# registries alone (no container registry): the node-image builder takes them from here.
#
#   binaries  kubeadm, kubelet, kube-scheduler, kube-proxy from tools/kube (version-stamped like build-kube.sh),
#             plus kube-apiserver, kube-controller-manager, kubectl, etcd and etcdctl from scripts/build-kube.sh
#             (the test control plane's own, so built once), and crictl
#             (tools/cri-tools, the release that goes with the Kubernetes minor version)
#   images    tagged exactly as `kubeadm config images list --kubernetes-version <version>` names them:
#             kube-apiserver, kube-controller-manager, kube-scheduler (FROM scratch), kube-proxy (Debian base with
#             iptables, nftables, ipset, conntrack, kmod, iproute2), etcd (tools/etcd), coredns (tools/coredns)
#             and pause (images/node-components/pause); plus the default StorageClass's provisioner
#             sluice/local-path-provisioner:<version> (tools/local-path-provisioner) and its helper
#             sluice/local-path-helper:<busybox version> (Debian's busybox-static)
#   tarball   one `docker save` of all of those images, for `ctr -n k8s.io images import`
#
# The image versions come from the built kubeadm; the script fails, saying what to bump, if tools/etcd or
# tools/coredns pins another version than kubeadm names. The Dockerfiles are in images/node-components/.
#
# Cached under ${SLUICE_CACHE_DIR:-~/.cache/sluice}, by version and a hash of the module's go.mod, go.sum and .go
# files: kube-node/, coredns/, local-path-provisioner/, cri-tools/, pause/
# (binaries), node-images/<k8s version>/images-<hash>.tar. Each image carries the label dev.sluice.inputs (a hash
# of its Dockerfile, of every file of its build context and of its base image) and is rebuilt only when that
# changes; the tarball is rewritten only when an image changed. A warm run rebuilds nothing and takes a few
# seconds. A cold run takes a few minutes (Go builds, the Debian base, apt inside two docker builds).
#
# Usage: scripts/build-node-components.sh [--rebuild]
#   --rebuild  rebuild this script's binaries, images (without docker's layer cache) and tarball, not
#              build-kube.sh's binaries
# Prints on stdout: kubeadm=PATH, kubelet=PATH, kubectl=PATH, crictl=PATH, one image=TAG per image the node must
# hold (kubeadm's list, then the provisioner and its helper), and images-tar=PATH. Progress goes to stderr.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kube_module=$repo_root/tools/kube
etcd_module=$repo_root/tools/etcd
coredns_module=$repo_root/tools/coredns
provisioner_module=$repo_root/tools/local-path-provisioner
crictl_module=$repo_root/tools/cri-tools
components=$repo_root/images/node-components
pause_module=$components/pause
cache_root=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}
label=dev.sluice.inputs
rebuild=false

while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild) rebuild=true ;;
    -h | --help)
      sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-node-components: error: unknown argument '$1'; accepted: --rebuild, --help" >&2
      exit 2
      ;;
  esac
  shift
done

script_name="build-node-components"
# shellcheck source=scripts/lib/go-build.sh
source "$repo_root/scripts/lib/go-build.sh"

started=$SECONDS
hash_text() { sha256sum | cut -c1-16; }

require_version() { # require_version GO_MOD MODULE: the version GO_MOD requires of MODULE, or die
  local version
  version=$(module_version "$1" "$2")
  [ -n "$version" ] || die "no $2 requirement in $1"
  echo "$version"
}
kube_version=$(require_version "$kube_module/go.mod" k8s.io/kubernetes)
etcd_version=$(require_version "$etcd_module/go.mod" go.etcd.io/etcd/server/v3)
coredns_version=$(require_version "$coredns_module/go.mod" github.com/coredns/coredns)
provisioner_version=$(require_version "$provisioner_module/go.mod" github.com/rancher/local-path-provisioner)
crictl_version=$(require_version "$crictl_module/go.mod" sigs.k8s.io/cri-tools)

# --- the control plane's binaries that build-kube.sh already builds (and caches) for the tests ----------------
kube_paths=$(bash "$repo_root/scripts/build-kube.sh") || die "scripts/build-kube.sh failed (output above)"
kube_path() {
  local path
  path=$(sed -n "s/^$1=//p" <<<"$kube_paths")
  if [ -z "$path" ] || [ ! -x "$path" ]; then die "scripts/build-kube.sh did not print an executable $1=PATH"; fi
  echo "$path"
}
apiserver=$(kube_path kube-apiserver)
controller_manager=$(kube_path kube-controller-manager)
kubectl=$(kube_path kubectl)
etcd=$(kube_path etcd)
etcdctl=$(kube_path etcdctl)

# --- the node's own Go binaries ----------------------------------------------------------------------------------
node_dir=$cache_root/kube-node/$(module_key "$kube_module" "$kube_version")
# CoreDNS and pause are built from our own main packages: module_key covers them too.
coredns_dir=$cache_root/coredns/$(module_key "$coredns_module" "$coredns_version")
provisioner_dir=$cache_root/local-path-provisioner/$(module_key "$provisioner_module" "$provisioner_version")
crictl_dir=$cache_root/cri-tools/$(module_key "$crictl_module" "$crictl_version")

node_ok() {
  local bin=$1/bin
  prints_line "$kube_version" "$bin/kubeadm" version -o short &&
    prints_line "Kubernetes $kube_version" "$bin/kubelet" --version &&
    prints_line "Kubernetes $kube_version" "$bin/kube-scheduler" --version &&
    prints_line "Kubernetes $kube_version" "$bin/kube-proxy" --version
}
coredns_ok() { prints_line "CoreDNS-${coredns_version#v}" "$1/bin/coredns" -version; }
provisioner_ok() {
  prints_line "local-path-provisioner version $provisioner_version" "$1/bin/local-path-provisioner" --version
}
crictl_ok() { prints_line "crictl version ${crictl_version#v}" "$1/bin/crictl" --version; }
pause_ok() { prints_line "pause (sluice) $2" "$1/bin/pause" -v; }

# build_if_needed WHAT DIR CHECK BUILD: unless DIR holds a build that passes CHECK (and --rebuild is off), run
# BUILD with `tmp` set to a fresh temp dir, check it and move it to DIR.
build_if_needed() {
  local what=$1 dir=$2 check=$3 build=$4 step_started=$SECONDS
  if ! $rebuild && "$check" "$dir"; then return 0; fi
  require_go "$kube_module/go.mod" "$what"
  say "building $what with $(go version | cut -d' ' -f3)"
  new_build_dir "$(basename "$(dirname "$dir")")"
  tmp=$build_dir
  "$build" || die "building $what failed (output above)"
  "$check" "$tmp" || die "the fresh build of $what in $tmp/bin does not report the expected version"
  install_dir "$tmp" "$dir"
  say "built $what in $((SECONDS - step_started)) s"
}

build_node() {
  local ldflags
  ldflags=$(kube_ldflags "$kube_module" "$kube_version") || die "could not read k8s.io/kubernetes from $kube_module"
  go_build "$kube_module" "$tmp/bin" "$ldflags" k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
}
build_coredns() { go_build "$coredns_module" "$tmp/bin" "-s -w" .; }
build_provisioner() {
  # Its release build stamps the git tag as main.VERSION (scripts/build in its repository).
  go_build "$provisioner_module" "$tmp/bin" "-s -w -X main.VERSION=$provisioner_version" \
    github.com/rancher/local-path-provisioner
}
build_crictl() {
  # Its Makefile stamps the release, without the v, into sigs.k8s.io/cri-tools/pkg/version.Version.
  go_build "$crictl_module" "$tmp/bin" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${crictl_version#v}" \
    sigs.k8s.io/cri-tools/cmd/crictl
}
build_pause() { go_build "$pause_module" "$tmp/bin" "-s -w -X main.version=$pause_version" .; }

take_build_lock build-node-components kube-node coredns local-path-provisioner cri-tools pause node-images

build_if_needed "kubeadm, kubelet, kube-scheduler and kube-proxy $kube_version" "$node_dir" node_ok build_node
kubeadm=$node_dir/bin/kubeadm

# --- what kubeadm will run, and so what the node must hold ---------------------------------------------------
kubeadm_list=$(timeout 60 "$kubeadm" config images list --kubernetes-version "$kube_version" 2>/dev/null) ||
  die "'$kubeadm config images list --kubernetes-version $kube_version' failed"
mapfile -t kubeadm_images <<<"$kubeadm_list"
# kubeadm_tag NAME: the tag kubeadm gives the image of NAME (the last element of its repository).
kubeadm_tag() {
  local image
  for image in "${kubeadm_images[@]}"; do
    if [ "${image%:*}" != "$image" ] && [ "$(basename "${image%:*}")" = "$1" ]; then
      echo "${image##*:}"
      return 0
    fi
  done
  die "kubeadm $kube_version lists no $1 image:
$kubeadm_list"
}
known=" kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause "
for image in "${kubeadm_images[@]}"; do
  name=$(basename "${image%:*}")
  [[ $known == *" $name "* ]] || die "kubeadm $kube_version lists an image this script does not build: $image"
done
etcd_tag=$(kubeadm_tag etcd)
coredns_tag=$(kubeadm_tag coredns)
pause_version=$(kubeadm_tag pause)
[ "v${etcd_tag%-*}" = "$etcd_version" ] ||
  die "kubeadm $kube_version runs etcd $etcd_tag but tools/etcd pins $etcd_version: set go.etcd.io/etcd/server/v3 \
and go.etcd.io/etcd/etcdctl/v3 to v${etcd_tag%-*} in tools/etcd/go.mod, then run 'GOWORK=off GOFLAGS= go mod tidy' there"
[ "$coredns_tag" = "$coredns_version" ] ||
  die "kubeadm $kube_version runs CoreDNS $coredns_tag but tools/coredns pins $coredns_version: set \
github.com/coredns/coredns to $coredns_tag in tools/coredns/go.mod, then run 'GOWORK=off GOFLAGS= go mod tidy' there"
for name in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  [ "$(kubeadm_tag "$name")" = "$kube_version" ] || die "kubeadm lists $name:$(kubeadm_tag "$name"), not $kube_version"
done
# pause's version is the tag kubeadm asks for.
pause_dir=$cache_root/pause/$(module_key "$pause_module" "$pause_version")

build_if_needed "CoreDNS $coredns_version" "$coredns_dir" coredns_ok build_coredns
build_if_needed "local-path-provisioner $provisioner_version" "$provisioner_dir" provisioner_ok build_provisioner
build_if_needed "crictl $crictl_version" "$crictl_dir" crictl_ok build_crictl
pause_check() { pause_ok "$1" "$pause_version"; }
build_if_needed "pause $pause_version" "$pause_dir" pause_check build_pause

# --- the images ----------------------------------------------------------------------------------------------
bash "$repo_root/scripts/ensure-docker.sh"
# A docker client without the buildx plugin can only use the classic builder, and must be told so.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi
base=$(bash "$repo_root/scripts/build-base-image.sh" | sed -n 's/^base=//p')
[ -n "$base" ] || die "scripts/build-base-image.sh did not name the base image it built"

image_size() { docker image inspect -f '{{ .Size }}' "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'; }

# new_context NAME [scratch]: sets `context` to a fresh build context holding images/node-components/NAME's
# Dockerfile; with `scratch`, also rootfs/ with a world-writable /tmp and the minimal /etc of scratch-rootfs/.
new_context() {
  new_build_dir node-images
  context=$build_dir
  cp "$components/$1/Dockerfile" "$context/Dockerfile"
  if [ "${2:-}" = scratch ]; then
    mkdir -p "$context/rootfs/tmp"
    chmod 1777 "$context/rootfs/tmp"
    cp -r "$components/scratch-rootfs/." "$context/rootfs/"
  fi
}

# add FILE DEST: put FILE into the context at DEST (a hard link when the cache and the context share a file system).
add() {
  mkdir -p "$(dirname "$context/$2")"
  ln -f "$1" "$context/$2" 2>/dev/null || cp "$1" "$context/$2"
}

# build_image TAG [BASE]: docker-build the prepared context as TAG (with BASE_IMAGE=BASE), labelled with a hash of
# the whole context (paths, modes, contents) and of BASE's id, unless TAG already carries that label.
built_tags=()
build_image() {
  local tag=$1 base_image=${2:-} inputs built old_id log step_started=$SECONDS
  local build_args=()
  inputs=$(cd "$context" && {
    echo "$tag"
    [ -z "$base_image" ] || echo "base $(docker image inspect -f '{{ .Id }}' "$base_image")"
    find . -printf '%p %y %m\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | hash_text)
  built_tags+=("$tag")
  built=$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$tag" 2>/dev/null || true)
  if ! $rebuild && [ "$built" = "$inputs" ]; then
    say "skipped $tag: up to date (inputs $inputs)"
    rm -rf "$context"
    return 0
  fi
  [ -z "$base_image" ] || build_args=(--build-arg "BASE_IMAGE=$base_image")
  # --rebuild means from scratch: no layer of the builder's cache (e.g. an old apt step) is reused.
  if $rebuild; then build_args+=(--no-cache); fi
  old_id=$(docker image inspect -f '{{ .Id }}' "$tag" 2>/dev/null || true)
  say "building $tag (inputs $inputs)"
  log=$context.log
  tmp_dirs+=("$log")
  if ! docker build "${build_args[@]}" --label "$label=$inputs" -t "$tag" "$context" >"$log" 2>&1; then
    die "docker build of $tag failed; the end of its output:
$(tail -n 30 "$log")"
  fi
  rm -rf "$context" "$log"
  # The classic builder leaves a multi-stage build's first stage behind, untagged.
  docker image prune --force --filter "label=dev.sluice.stage=node-build" >/dev/null || true
  # The image this one replaces is now untagged; remove it unless a container still uses it.
  if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{ .Id }}' "$tag")" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
  say "built $tag in $((SECONDS - step_started)) s ($(image_size "$tag"))"
}

registry_image() { # registry_image NAME: the full tag kubeadm lists for NAME
  local image
  for image in "${kubeadm_images[@]}"; do
    if [ "$(basename "${image%:*}")" = "$1" ]; then echo "$image"; fi
  done
}

for name in kube-apiserver kube-controller-manager kube-scheduler; do
  new_context control-plane scratch
  case $name in
    kube-apiserver) add "$apiserver" "rootfs/usr/local/bin/$name" ;;
    kube-controller-manager) add "$controller_manager" "rootfs/usr/local/bin/$name" ;;
    kube-scheduler) add "$node_dir/bin/$name" "rootfs/usr/local/bin/$name" ;;
  esac
  build_image "$(registry_image "$name")"
done

new_context kube-proxy
add "$node_dir/bin/kube-proxy" kube-proxy
add "$components/kube-proxy/iptables-wrapper" iptables-wrapper
build_image "$(registry_image kube-proxy)" "$base"

new_context etcd scratch
add "$etcd" rootfs/usr/local/bin/etcd
add "$etcdctl" rootfs/usr/local/bin/etcdctl
build_image "$(registry_image etcd)"

new_context coredns scratch
add "$coredns_dir/bin/coredns" rootfs/coredns
build_image "$(registry_image coredns)"

new_context pause
add "$pause_dir/bin/pause" rootfs/pause
build_image "$(registry_image pause)"

provisioner_image=sluice/local-path-provisioner:$provisioner_version
new_context local-path-provisioner scratch
add "$provisioner_dir/bin/local-path-provisioner" rootfs/usr/local/bin/local-path-provisioner
build_image "$provisioner_image"

# The helper's tag names the Dockerfile's recipe, not busybox's version (which comes from Debian at build time).
helper_image=sluice/local-path-helper:1
new_context local-path-helper
build_image "$helper_image" "$base"

for tag in "${built_tags[@]}"; do
  docker image inspect "$tag" >/dev/null 2>&1 || die "the image $tag is missing after its build"
done

# --- one tarball of them all ---------------------------------------------------------------------------------
tar_dir=$cache_root/node-images/$kube_version
tar_key=$(for tag in "${built_tags[@]}"; do echo "$tag $(docker image inspect -f '{{ .Id }}' "$tag")"; done | hash_text)
images_tar=$tar_dir/images-$tar_key.tar
mkdir -p "$tar_dir"
if $rebuild || [ ! -s "$images_tar" ]; then
  step_started=$SECONDS
  say "saving ${#built_tags[@]} images to $images_tar"
  partial=$tar_dir/.images-$tar_key.tar.partial
  tmp_dirs+=("$partial")
  docker save -o "$partial" "${built_tags[@]}" || die "docker save of ${built_tags[*]} failed"
  chmod 644 "$partial" # docker save writes 0600
  mv "$partial" "$images_tar"
  find "$tar_dir" -maxdepth 1 -name 'images-*.tar' ! -name "${images_tar##*/}" -delete
  say "saved $(du -m "$images_tar" | cut -f1) MB in $((SECONDS - step_started)) s"
else
  say "skipped $images_tar: up to date"
fi

say "done in $((SECONDS - started)) s"
echo "kubeadm=$kubeadm"
echo "kubelet=$node_dir/bin/kubelet"
echo "kubectl=$kubectl"
echo "crictl=$crictl_dir/bin/crictl"
for tag in "${kubeadm_images[@]}" "$provisioner_image" "$helper_image"; do echo "image=$tag"; done
echo "images-tar=$images_tar"
