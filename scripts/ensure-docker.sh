#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's docker.io when `dockerd` is missing, and
# start `dockerd` in the background (no systemd here) when the daemon does not answer `docker info`. Its log goes
# to ${SLUICE_CACHE_DIR:-~/.cache/sluice}/dockerd.log. Idempotent: with a running engine it only checks (~0.1 s).
# Concurrent runs take turns on a lock, so only one of them starts the daemon.
#
# A newer docker client may come first on PATH (e.g. /usr/local/bin/docker); it negotiates the API version down
# to the daemon's and works.
#
# Usage: scripts/ensure-docker.sh
# Prints nothing on stdout; progress and errors go to stderr.
set -euo pipefail

cache_root=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}
log_file=$cache_root/dockerd.log
start_timeout_s=30

say() { echo "ensure-docker: $*" >&2; }
die() {
  echo "ensure-docker: error: $*" >&2
  exit 1
}

case "${1:-}" in
  "") ;;
  -h | --help)
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "ensure-docker: error: unknown argument '$1'; accepted: --help" >&2
    exit 2
    ;;
esac

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && engine_answers; then
  exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.ensure-docker.lock"
flock 9

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "the Docker engine (dockerd) is not installed; install it (Debian/Ubuntu: apt-get install -y docker.io)"
  fi
  started=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  # Another apt run (e.g. a parallel setup script) may hold the dpkg lock: wait for it rather than fail.
  apt_options=(-o DPkg::Lock::Timeout=300)
  # Read the output whole: with `| grep -q` under pipefail, grep's early exit can fail the pipeline (SIGPIPE).
  policy=$(apt-cache policy docker.io 2>/dev/null || true)
  if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
    say "updating the package lists (docker.io is not in them)"
    apt-get "${apt_options[@]}" update -qq
  fi
  say "installing docker.io from Debian's packages"
  apt-get "${apt_options[@]}" install -y -qq docker.io >/dev/null
  command -v dockerd >/dev/null 2>&1 || die "docker.io was installed but dockerd is still not on PATH ($PATH)"
  say "installed docker.io in $((SECONDS - started)) s"
fi

if engine_answers; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  die "the Docker daemon does not answer and only root can start it here: start it (sudo systemctl start docker,
  or sudo dockerd), and have your user in the docker group"
fi
daemon_pid=$(pgrep -xo dockerd || true)
if [ -n "$daemon_pid" ]; then
  say "dockerd (pid $daemon_pid) is running but does not answer yet; waiting for it"
else
  say "starting dockerd (log: $log_file)"
  # setsid: the daemon outlives this script and its terminal, and Ctrl-C in the caller does not reach it. It must
  # not inherit the lock's descriptor (9), or it would hold the lock for as long as it runs.
  setsid nohup dockerd >>"$log_file" 2>&1 </dev/null 9>&- &
  daemon_pid=$!
fi

started=$SECONDS
while ! engine_answers; do
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    die "dockerd exited during start-up; last lines of $log_file:
$(tail -n 30 "$log_file" 2>/dev/null || echo '(no log)')"
  fi
  if [ $((SECONDS - started)) -ge "$start_timeout_s" ]; then
    die "the Docker daemon did not answer within ${start_timeout_s} s; last lines of $log_file:
$(tail -n 30 "$log_file" 2>/dev/null || echo '(no log)')"
  fi
  sleep 0.5
done
say "dockerd answers (started in $((SECONDS - started)) s)"
