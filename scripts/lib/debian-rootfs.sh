# shellcheck shell=bash
# Shared by the scripts that build images from a Debian root file system made here with debootstrap, for machines
# that cannot pull a base image (build-base-image.sh, build-kind-node.sh). Source it after defining `say` and `die`.
# The caller's inputs hash should include this file: it is part of every recipe that uses it.

debian_mirror=${SLUICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# ensure_debootstrap: root, and debootstrap installed from Debian's packages when missing.
ensure_debootstrap() {
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root to build the root file system; run this script as root"
  command -v debootstrap >/dev/null 2>&1 && return 0
  say "installing debootstrap from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt_get() { apt-get -o DPkg::Lock::Timeout=300 -qq "$@"; } # waits for a parallel apt run instead of failing
  apt_get install -y debootstrap >/dev/null || { apt_get update && apt_get install -y debootstrap >/dev/null; } ||
    die "could not install debootstrap (apt-get install -y debootstrap)"
}

# unmount_below DIR: lazily unmount whatever is mounted at or below DIR, deepest first. debootstrap mounts /proc
# and /sys inside the root file system; a failed run can leave them mounted, and removing the tree with them mounted
# would descend into the host's /proc.
unmount_below() {
  local mount
  for mount in $(findmnt -rno TARGET | grep -F "$1" | sort -r); do umount -l "$mount" || true; done
}

# debootstrap_rootfs ROOTFS SUITE PACKAGE...: a minbase root file system of SUITE from the mirror with PACKAGEs and
# their dependencies (not their recommendations). On failure, dies with the tail of debootstrap's logs.
debootstrap_rootfs() {
  local rootfs=$1 suite=$2 include log
  shift 2
  include=$(
    IFS=,
    echo "$*"
  )
  log=$(dirname "$rootfs")/debootstrap.log
  if ! debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$debian_mirror" >"$log" 2>&1; then
    die "debootstrap failed; last lines of its log:
$(tail -n 30 "$log")
$(tail -n 20 "$rootfs/debootstrap/debootstrap.log" 2>/dev/null || true)"
  fi
}

# slim_rootfs ROOTFS: the same trimming as Debian's slim images (no docs, man pages or locales now, nor in later
# installs); no apt lists, caches or logs; and no host name or resolver, which the engine provides per container.
slim_rootfs() {
  local rootfs=$1
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
  : >"$rootfs/etc/hostname"
  rm -f "$rootfs/etc/resolv.conf"
}

# import_rootfs ROOTFS IMAGE [--change INSTRUCTION]...: `docker import` the tree as IMAGE. The image it replaces is
# removed once untagged, unless images built on it still exist.
import_rootfs() {
  local rootfs=$1 image=$2 old_id
  shift 2
  old_id=$(docker image inspect -f '{{ .Id }}' "$image" 2>/dev/null || true)
  tar --numeric-owner -C "$rootfs" -c . | docker import "$@" - "$image" >/dev/null
  if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{ .Id }}' "$image")" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
}
