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
mirror=${SLUICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3 is 3.11 on bookworm; procps gives Spark's scripts `ps`; tini forwards signals as PID 1.
packages=(bash ca-certificates openjdk-17-jre-headless procps python3 python3-venv tini)
cache_root=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}
label=dev.sluice.inputs
rebuild=false

say() { echo "build-base-image: $*" >&2; }
die() {
  echo "build-base-image: error: $*" >&2
  exit 1
}

case "${1:-}" in
  "") ;;
  --rebuild) rebuild=true ;;
  -h | --help)
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "build-base-image: error: unknown argument '$1'; accepted: --rebuild, --help" >&2
    exit 2
    ;;
esac

# Everything that decides the root file system is in this file; the mirror is an input too.
inputs=$({ cat "${BASH_SOURCE[0]}"; echo "$mirror"; } | sha256sum | cut -c1-16)

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

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root to build the root file system; run this script as root"
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt_get() { apt-get -o DPkg::Lock::Timeout=300 -qq "$@"; } # waits for a parallel apt run instead of failing
  apt_get install -y debootstrap >/dev/null || { apt_get update && apt_get install -y debootstrap >/dev/null; } ||
    die "could not install debootstrap (apt-get install -y debootstrap)"
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/sluice-base.XXXXXX")
rootfs=$work/rootfs
cleanup() {
  # debootstrap mounts /proc and /sys inside the root file system; a failed run can leave them mounted, and
  # removing the tree with them mounted would descend into the host's /proc.
  local mount
  for mount in $(findmnt -rno TARGET | grep -F "$rootfs" | sort -r); do umount -l "$mount" || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

started=$SECONDS
say "debootstrap $suite from $mirror with ${packages[*]} (a few minutes)"
include=$(
  IFS=,
  echo "${packages[*]}"
)
if ! debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$mirror" \
  >"$work/debootstrap.log" 2>&1; then
  die "debootstrap failed; last lines of its log:
$(tail -n 30 "$work/debootstrap.log")
$(tail -n 20 "$rootfs/debootstrap/debootstrap.log" 2>/dev/null || true)"
fi
say "debootstrap done in $((SECONDS - started)) s"

# The same trimming as Debian's slim images: no docs or man pages now, nor in later installs.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/debootstrap
# The host's name and resolver do not belong in an image: the engine provides them per container.
: >"$rootfs/etc/hostname"
rm -f "$rootfs/etc/resolv.conf"

say "importing the root file system as $image"
old_id=$(docker image inspect -f '{{ .Id }}' "$image" 2>/dev/null || true)
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  --change 'CMD ["bash"]' \
  --change "LABEL $label=$inputs" \
  --change "LABEL org.opencontainers.image.title=sluice-debian-base" \
  --change "LABEL org.opencontainers.image.description=\"Debian $suite minbase with ${packages[*]}\"" \
  - "$image" >/dev/null
# The image this one replaces is now untagged; remove it unless images built on it still exist.
if [ -n "$old_id" ]; then docker image rm "$old_id" >/dev/null 2>&1 || true; fi
say "built $image in $((SECONDS - started)) s ($(docker image inspect -f '{{ .Size }}' "$image" |
  awk '{ printf "%.0f MB", $1 / 1e6 }'))"
echo "base=$image"
