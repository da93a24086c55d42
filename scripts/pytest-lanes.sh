#!/usr/bin/env bash
# `make test`'s pytest run: every tier, as two pytest processes at once.
#
#   light lane: tests/charts tests/k8s tests/unit — pure code, and a control plane that mostly waits (the operator's
#               reconcile passes, the API server's answers)
#   heavy lane: tests/bench tests/integration tests/images tests/e2e, in that order — Spark, Kafka, Docker and kind,
#               which keep the cores busy
#
# Each process starts the session fixtures its tiers use (a Kafka broker, a Spark session, a control plane: each on
# its own free ports and temp dirs). The heavy lane's output streams; the light lane's is printed once both have
# ended. The exit status is non-zero when either process fails, so a failed test in either lane fails the run.
#
# Usage: scripts/pytest-lanes.sh PYTEST [PYTEST_ARGS...]   (the arguments go to both processes; select tests with
#        the per-tier targets, `make test-unit` and so on, or with pytest itself)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ $# -ge 1 ] || {
  echo "usage: scripts/pytest-lanes.sh PYTEST [PYTEST_ARGS...]" >&2
  exit 2
}
pytest=$1
shift
light=(tests/charts tests/k8s tests/unit)
heavy=(tests/bench tests/integration tests/images tests/e2e)
# A new tier must be given a lane, not skipped unnoticed.
for dir in tests/*/; do
  dir=${dir%/}
  case " ${light[*]} ${heavy[*]} " in *" $dir "*) continue ;; esac
  if compgen -G "$dir/test_*.py" >/dev/null; then
    echo "pytest-lanes: error: $dir holds tests but is in neither lane; add it to light or heavy in $0" >&2
    exit 2
  fi
done

light_log=$(mktemp "${TMPDIR:-/tmp}/sluice-pytest-light.XXXXXX")
"$pytest" "$@" "${light[@]}" >"$light_log" 2>&1 </dev/null &
light_pid=$!
# An interrupted run stops the light lane too (the heavy one gets the terminal's signal itself).
trap 'kill "$light_pid" 2>/dev/null || true; rm -f "$light_log"' EXIT

echo "pytest-lanes: ${light[*]} run beside this output (pid $light_pid); their report follows it"
heavy_status=0
"$pytest" "$@" "${heavy[@]}" || heavy_status=$?
light_status=0
wait "$light_pid" || light_status=$?

echo
echo "===== pytest-lanes: ${light[*]} (ran beside the tiers above): exit status $light_status ====="
cat "$light_log"
echo "===== pytest-lanes: ${heavy[*]}: exit status $heavy_status; ${light[*]}: exit status $light_status ====="
[ "$heavy_status" -eq 0 ] && [ "$light_status" -eq 0 ]
