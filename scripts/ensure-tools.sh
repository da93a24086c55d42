#!/usr/bin/env bash
# Make sure the machine has what Sluice's local runtime and tests need, installing from Debian's packages when
# something is missing: Java >= 17 (Kafka 4 and Spark 4), Maven (resolves the pinned jars from Maven Central),
# Python 3.11, shellcheck (lint) and openssl (the test control plane's keys). Go, for the test control plane,
# is checked by scripts/build-kube.sh. Idempotent: on a ready machine it only checks.
set -euo pipefail

missing=()

java_major() {
  local java="java"
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then java="$JAVA_HOME/bin/java"; fi
  command -v "$java" >/dev/null 2>&1 || { echo 0; return; }
  "$java" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

[ "$(java_major)" -ge 17 ] 2>/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v python3.11 >/dev/null 2>&1 || missing+=(python3.11 python3.11-venv)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)


if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing ${missing[*]}; install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}) and retry" >&2
  exit 1
fi

echo "Installing ${missing[*]} from Debian's packages..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "Installed ${missing[*]}"
