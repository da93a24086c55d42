#!/usr/bin/env bash
# Build the offline kind node image sluice/kind-node:v1.34.4, for `kind create cluster --image` on machines that
# cannot pull images (kind's own `kind build node-image` fetches six images from registries; see
# ../shared/KIND_OFFLINE.md for the contract this image fulfils).
#
# Two stages, each cached by a hash of its inputs in the image label dev.sluice.inputs:
#   1. sluice/kind-node-base:bookworm: a Debian bookworm root file system (debootstrap) with systemd, containerd,
#      runc, the CNI plugins and the tools a node needs, `docker import`ed. bookworm's systemd 252 still boots on
#      cgroup v1 hosts.
#   2. the node image: our files from images/kind-node/ (entrypoint, containerd config, kubelet units, manifests),
#      the kubeadm/kubelet/kubectl/crictl binaries and every image the cluster runs, from
#      scripts/build-node-components.sh. The images are imported by tag into containerd's k8s.io namespace of a
#      build container that is then `docker commit`ed, so no node ever pulls.
# A warm run rebuilds nothing (both labels match). A cold run takes a few minutes (debootstrap downloads ~100 MB).
#
# Usage: scripts/build-kind-node.sh [--rebuild] [--no-components]
#   --rebuild        rebuild both stages whatever their labels say
#   --no-components  build <image>-nocomponents without the Kubernetes binaries and images (boot checks only)
# Environment: SLUICE_KIND_NODE_IMAGE (the tag to build), SLUICE_PAUSE_IMAGE, SLUICE_LOCAL_PATH_PROVISIONER_IMAGE,
# SLUICE_LOCAL_PATH_HELPER_IMAGE (default: the pause and local-path images build-node-components.sh reports).
# Prints `node-image=<image>` on stdout; progress goes to stderr.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kube_version=v1.34.4
image=${SLUICE_KIND_NODE_IMAGE:-sluice/kind-node:$kube_version}
base_image=sluice/kind-node-base:bookworm
suite=bookworm
# systemd-sysv gives /sbin/init; containernetworking-plugins installs its plugins in /usr/lib/cni. No cri-tools in
# bookworm: crictl is built from its Go module (scripts/build-node-components.sh); `kind load` uses ctr.
packages=(bash ca-certificates conntrack containerd containernetworking-plugins dbus ethtool iproute2 iptables kmod
  libseccomp2 mount nftables procps runc socat systemd systemd-sysv util-linux)
files_dir=$repo_root/images/kind-node
cache_root=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}
label=dev.sluice.inputs
rebuild=false
components=true

say() { echo "build-kind-node: $*" >&2; }
die() {
  echo "build-kind-node: error: $*" >&2
  exit 1
}
# shellcheck source=scripts/lib/debian-rootfs.sh
source "$repo_root/scripts/lib/debian-rootfs.sh"

for arg in "$@"; do
  case $arg in
    --rebuild) rebuild=true ;;
    --no-components) components=false ;;
    -h | --help)
      sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-kind-node: error: unknown argument '$arg'; accepted: --rebuild, --no-components, --help" >&2
      exit 2
      ;;
  esac
done
$components || image=$image-nocomponents

inputs_hash() { sha256sum | cut -c1-16; }
built_inputs() { docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true; }

# ---- stage 1: the node base -------------------------------------------------------------------------------------

build_base() {
  local work rootfs
  ensure_debootstrap
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/sluice-kind-base.XXXXXX")
  rootfs=$work/rootfs
  # shellcheck disable=SC2064 # expand now: the trap must clean this run's tree
  trap "unmount_below '$rootfs'; rm -rf --one-file-system '$work'" EXIT
  say "debootstrap $suite with ${packages[*]} (a few minutes)"
  debootstrap_rootfs "$rootfs" "$suite" "${packages[@]}"

  # systemd in a container (https://systemd.io/CONTAINER_INTERFACE/): keep only what a node needs. Nothing the
  # packages enabled runs at boot; the node stage enables containerd and the kubelet. No udev, no getty on the
  # container's tty, no journald reading the host's kernel log.
  rm -f "$rootfs"/etc/systemd/system/*.wants/* "$rootfs"/lib/systemd/system/multi-user.target.wants/* \
    "$rootfs"/lib/systemd/system/local-fs.target.wants/* "$rootfs"/lib/systemd/system/sockets.target.wants/*udev* \
    "$rootfs"/lib/systemd/system/sockets.target.wants/*initctl* "$rootfs"/lib/systemd/system/basic.target.wants/*
  local unit
  for unit in getty.target console-getty.service systemd-udevd.service systemd-binfmt.service \
    systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  mkdir -p "$rootfs/etc/systemd/journald.conf.d"
  printf '[Journal]\nReadKMsg=no\n' >"$rootfs/etc/systemd/journald.conf.d/10-container.conf"
  # Debian enables containerd's own unit; CNI plugins go where CNI installers expect them, /opt/cni/bin.
  mkdir -p "$rootfs/opt/cni/bin"
  local plugin
  for plugin in "$rootfs"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/${plugin##*/}" "$rootfs/opt/cni/bin/"; done
  slim_rootfs "$rootfs"

  say "importing the root file system as $base_image"
  import_rootfs "$rootfs" "$base_image" \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV container=docker" \
    --change 'ENTRYPOINT ["/sbin/init"]' \
    --change "LABEL $label=$base_inputs" \
    --change "LABEL org.opencontainers.image.title=sluice-kind-node-base"
  unmount_below "$rootfs"
  rm -rf --one-file-system "$work"
  trap - EXIT
}

# The recipe (this function's text), the package list, the suite, the mirror and the shared library.
base_inputs=$({
  declare -f build_base
  echo "$suite $debian_mirror ${packages[*]}"
  cat "$repo_root/scripts/lib/debian-rootfs.sh"
} | inputs_hash)

mkdir -p "$cache_root"
exec 9>"$cache_root/.build-kind-node.lock"
if ! flock -n 9; then
  say "another build holds $cache_root/.build-kind-node.lock; waiting for it"
  flock 9
fi

started=$SECONDS
if ! $rebuild && [ "$(built_inputs "$base_image")" = "$base_inputs" ]; then
  say "skipped: $base_image is up to date (inputs $base_inputs)"
else
  build_base
  say "built $base_image in $((SECONDS - started)) s"
fi
base_id=$(docker image inspect -f '{{ .Id }}' "$base_image")

# ---- stage 2: the node image ------------------------------------------------------------------------------------

kubeadm='' kubelet='' kubectl='' crictl='' images_tar=''
images=()
if $components; then
  components_script=$repo_root/scripts/build-node-components.sh
  [ -f "$components_script" ] || die "$components_script is missing: it builds the Kubernetes binaries and images"
  components_out=$(bash "$components_script") || die "scripts/build-node-components.sh failed (its output above)"
  while IFS= read -r line; do
    case $line in
      kubeadm=*) kubeadm=${line#*=} ;;
      kubelet=*) kubelet=${line#*=} ;;
      kubectl=*) kubectl=${line#*=} ;;
      crictl=*) crictl=${line#*=} ;;
      image=*) images+=("${line#*=}") ;;
      images-tar=*) images_tar=${line#*=} ;;
    esac
  done <<<"$components_out"
  for path in "$kubeadm" "$kubelet" "$kubectl" "$crictl" "$images_tar"; do
    [ -f "$path" ] || die "build-node-components.sh did not report kubeadm, kubelet, kubectl, crictl and images-tar files"
  done
fi
# The first reported image whose name matches, else a default.
reported_image() {
  local candidate
  for candidate in ${images[@]+"${images[@]}"}; do
    case $candidate in */"$1":*)
      echo "$candidate"
      return
      ;;
    esac
  done
  echo "$2"
}
pause_image=${SLUICE_PAUSE_IMAGE:-$(reported_image pause registry.k8s.io/pause:3.10.1)}
provisioner_image=${SLUICE_LOCAL_PATH_PROVISIONER_IMAGE:-$(reported_image local-path-provisioner \
  sluice/local-path-provisioner:v0.0.31)}
helper_image=${SLUICE_LOCAL_PATH_HELPER_IMAGE:-$(reported_image local-path-helper sluice/local-path-helper:1)}

# This script, our files, the base, the binaries and the images tarball (path, size and time: hashing ~1 GB each
# run would cost seconds), and the image names.
node_inputs=$({
  cat "${BASH_SOURCE[0]}" "$repo_root/scripts/lib/debian-rootfs.sh"
  (cd "$files_dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  echo "$base_id $kube_version $pause_image $provisioner_image $helper_image ${images[*]+${images[*]}}"
  for path in "$kubeadm" "$kubelet" "$kubectl" "$crictl" "$images_tar"; do
    [ -z "$path" ] || stat -L -c '%n %s %Y' "$path"
  done
} | inputs_hash)

if ! $rebuild && [ "$(built_inputs "$image")" = "$node_inputs" ]; then
  say "skipped: $image is up to date (inputs $node_inputs)"
  echo "node-image=$image"
  exit 0
fi

stage_started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/var/tmp}/sluice-kind-node.XXXXXX")
container=sluice-kind-node-build-$$
cleanup() {
  docker rm -f -v "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Our files, with the image names and the version filled in.
tree=$work/tree
mkdir -p "$tree"
cp -a "$files_dir/rootfs/." "$tree/"
grep -rlZ '@SLUICE_[A-Z_]*@' "$tree" | xargs -0 -r sed -i \
  -e "s|@SLUICE_PAUSE_IMAGE@|$pause_image|g" \
  -e "s|@SLUICE_LOCAL_PATH_PROVISIONER_IMAGE@|$provisioner_image|g" \
  -e "s|@SLUICE_LOCAL_PATH_HELPER_IMAGE@|$helper_image|g" \
  -e "s|@SLUICE_KUBE_VERSION@|$kube_version|g"
if grep -rn '@SLUICE_[A-Z_]*@' "$tree" >&2; then die "unfilled placeholders in images/kind-node/rootfs"; fi
echo "$kube_version" >"$tree/kind/version"
mkdir -p "$tree/etc/kubernetes/manifests" "$tree/etc/cni/net.d"
if $components; then
  mkdir -p "$tree/usr/bin"
  install -m 0755 "$kubeadm" "$kubelet" "$kubectl" "$tree/usr/bin/"
  mkdir -p "$tree/usr/local/bin"
  install -m 0755 "$crictl" "$tree/usr/local/bin/"
fi

say "assembling $image on $base_image"
# --init reaps containerd once stopped. Not privileged: containerd only stores the images here, still packed
# (the node unpacks each on first use, as with kind's own builder).
docker run -d --init --name "$container" --entrypoint sleep --security-opt seccomp=unconfined "$base_image" infinity \
  >/dev/null
tar --numeric-owner --owner=0 --group=0 -C "$tree" -c . | docker cp - "$container:/"
docker exec "$container" systemctl enable containerd.service kubelet.service >/dev/null 2>&1 ||
  die "could not enable containerd and kubelet in the node"

if $components; then
  docker exec "$container" bash -c 'containerd >/var/log/containerd-build.log 2>&1 &'
  for _ in $(seq 50); do
    docker exec "$container" ctr version >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker exec "$container" ctr version >/dev/null 2>&1 ||
    die "containerd did not start in the build container: $(docker exec "$container" cat /var/log/containerd-build.log)"
  say "importing $(du -h "$images_tar" | cut -f1) of images into containerd's k8s.io namespace"
  docker exec -i "$container" ctr -n k8s.io images import --no-unpack --all-platforms - <"$images_tar" \
    >/dev/null || die "ctr images import failed"
  # Every image kubeadm, containerd and the manifests name must be there by tag: a node never pulls. Pinned, as
  # kind's builder marks them (ctr 1.6 has no `import --label`), so that image garbage collection keeps them.
  mapfile -t have < <(docker exec "$container" ctr -n k8s.io images ls -q)
  docker exec "$container" bash -c 'for ref in "$@"; do ctr -n k8s.io images label "$ref" \
    io.cri-containerd.pinned=pinned >/dev/null || exit 1; done' labels "${have[@]}" || die "could not pin the images"
  kubeadm_images=$(docker exec "$container" kubeadm config images list --kubernetes-version "$kube_version") ||
    die "kubeadm config images list failed in the node"
  mapfile -t need < <(sort -u <(
    echo "$kubeadm_images"
    echo "$pause_image"
    grep -rhoE '^\s*(- )?image: *"?[^" ]+' "$tree/kind/manifests" | sed -E 's/.*image: *"?//'
  ))
  missing=()
  for ref in "${need[@]}"; do
    # containerd names images in full: docker.io/ unless the first component is a registry host.
    case $ref in
      *.*/* | *:*/* | localhost/*) full=$ref ;;
      */*) full=docker.io/$ref ;;
      *) full=docker.io/library/$ref ;;
    esac
    printf '%s\n' "${have[@]}" | grep -qxF "$full" || missing+=("$ref")
  done
  [ ${#missing[@]} -eq 0 ] || die "images missing from the node (by tag): ${missing[*]}
  imported: ${have[*]}"
  say "${#need[@]} images present by tag"
  docker exec "$container" bash -c 'pkill -x containerd; while pgrep -x containerd >/dev/null; do sleep 0.1; done
    rm -rf /var/log/containerd-build.log /run/containerd /tmp/*'
fi

old_id=$(docker image inspect -f '{{ .Id }}' "$image" 2>/dev/null || true)
# `docker commit --change` cannot set STOPSIGNAL (systemd exits on SIGRTMIN+3; SIGTERM makes it re-execute): the
# commit is a temporary tag, and a one-line build on it sets the stop signal.
docker commit \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'CMD []' \
  --change "ENV container=docker" \
  "$container" "$image-assembled" >/dev/null
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$image-assembled" | docker build -q \
  --label "$label=$node_inputs" \
  --label "org.opencontainers.image.title=sluice-kind-node" \
  --label "org.opencontainers.image.version=$kube_version" \
  -t "$image" - >/dev/null 2>"$work/build.log" ||
  die "could not set the stop signal of $image: $(cat "$work/build.log")"
docker image rm "$image-assembled" >/dev/null
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{ .Id }}' "$image")" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
say "built $image in $((SECONDS - stage_started)) s ($(docker image inspect -f '{{ .Size }}' "$image" |
  awk '{ printf "%.0f MB", $1 / 1e6 }'))"
echo "node-image=$image"
