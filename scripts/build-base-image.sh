#!/usr/bin/env bash
# Build the offline base image sluice/debian-base:bookworm: a stand-in for the public debian:bookworm-slim for
# machines that cannot pull images. Its root file system comes from Debian's mirror with debootstrap (minbase)
# and already holds every package the project's Dockerfiles install (see `packages` below), so their apt step has
# nothing to do and needs no network. apt lists, apt caches, man pages and docs (not the copyright files) are
# removed, and dpkg is told to skip them in later installs, as in Debian's slim images.
#
# The image carries the label dev.sluice.inputs: a hash of this script (package list, suite, mirror, recipe).
# Idempotent: when the image exists with the same hash, nothing is rebuilt (~0.1 s). A cold build takes a few
# minutes (debootstrap downloads ~150 MB). debootstrap is installed from Debian's packages when missing.
#
# Usage: scripts/build-base-image.sh [--rebuild]
# Prints `base=<image>` on stdout; progress goes to stderr.
set -euo pipefail

image=sluice/debian-base:bookworm
suite=bookworm
# python3 is 3.11 on bookworm; procps gives Spark's scripts `ps`; tini forwards signals as PID 1.
packages=(bash ca-certificates openjdk-17-jre-headless procps python3 python3-venv tini)
cache_root=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}
label=dev.sluice.inputs

say() { echo "build-base-image: $*" >&2; }
die() {
  echo "build-base-image: error: $*" >&2
  exit 1
}
lib=$(dirname "${BASH_SOURCE[0]}")/lib/debian-rootfs.sh
# shellcheck source=scripts/lib/debian-rootfs.sh
source "$lib"

# shellcheck source=scripts/lib/args.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/args.sh"
rebuild=false
parse_rebuild_arg build-base-image "$@"

# Everything that decides the root file system is in this file and the shared library; the mirror is an input too.
inputs=$({ cat "${BASH_SOURCE[0]}" "$lib"; echo "$debian_mirror"; } | sha256sum | cut -c1-16)

built_inputs() { docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$image" 2>/dev/null || true; }

if ! $rebuild && [ "$(built_inputs)" = "$inputs" ]; then
  say "skipped: $image is up to date (inputs $inputs)"
  echo "base=$image"
  exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.build-base-image.lock"
if ! flock -n 9; then
  say "another build holds $cache_root/.build-base-image.lock; waiting for it"
  flock 9
fi
if ! $rebuild && [ "$(built_inputs)" = "$inputs" ]; then # built by the run we waited for
  echo "base=$image"
  exit 0
fi

ensure_debootstrap

work=$(mktemp -d "${TMPDIR:-/var/tmp}/sluice-base.XXXXXX")
rootfs=$work/rootfs
cleanup() {
  unmount_below "$rootfs"
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

started=$SECONDS
say "debootstrap $suite from $debian_mirror with ${packages[*]} (a few minutes)"
debootstrap_rootfs "$rootfs" "$suite" "${packages[@]}"
say "debootstrap done in $((SECONDS - started)) s"
slim_rootfs "$rootfs"

say "importing the root file system as $image"
import_rootfs "$rootfs" "$image" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  --change 'CMD ["bash"]' \
  --change "LABEL $label=$inputs" \
  --change "LABEL org.opencontainers.image.title=sluice-debian-base" \
  --change "LABEL org.opencontainers.image.description=\"Debian $suite minbase with ${packages[*]}\""
say "built $image in $((SECONDS - started)) s ($(docker image inspect -f '{{ .Size }}' "$image" |
  awk '{ printf "%.0f MB", $1 / 1e6 }'))"
echo "base=$image"
