#!/usr/bin/env bash
# `make test`'s pytest run: every tier, as two pytest processes at once.
#
#   lane 1: tests/charts tests/k8s tests/chaos, then tests/bench — a control plane that mostly waits (the
#           operator's reconcile passes, the API server's answers), the chaos tier (jobs, the broker and the operator
#           killed and restarted, ~11 min), then the quick benchmark (one program, about a quarter of all the pytest
#           time), which runs beside the end of lane 2
#   lane 2: tests/unit tests/integration tests/images tests/e2e, in that order — pure code and Spark, Kafka, Docker
#           and kind; its e2e tier spends much of its time waiting on pods and windows, which the benchmark's drains
#           fill
#
# Each process starts the session fixtures its tiers use (a Kafka broker, a Spark session, a control plane: each on
# its own free ports and temp dirs). Lane 2's output streams; lane 1's is printed once both have ended. The exit
# status is non-zero when either process fails, so a failed test in either lane fails the run.
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
lane1=(tests/charts tests/k8s tests/chaos tests/bench)
lane2=(tests/unit tests/integration tests/images tests/e2e)
# A new tier must be given a lane, not skipped unnoticed.
for dir in tests/*/; do
  dir=${dir%/}
  case " ${lane1[*]} ${lane2[*]} " in *" $dir "*) continue ;; esac
  if compgen -G "$dir/test_*.py" >/dev/null; then
    echo "pytest-lanes: error: $dir holds tests but is in neither lane; add it to lane1 or lane2 in $0" >&2
    exit 2
  fi
done

# Kind clusters of the e2e tier (tests/e2e names them sluice-e2e*) left by a run that ended before its teardown
# (killed, or a machine stopped): their nodes restart with the Docker daemon, with that run's pods, which would run
# beside these lanes. Deleted first, unless SLUICE_E2E_KEEP_CLUSTER=1 kept them on purpose.
if [ "${SLUICE_E2E_KEEP_CLUSTER:-}" != 1 ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  leftovers=$(docker ps --all --filter label=io.x-k8s.kind.cluster --format '{{.Label "io.x-k8s.kind.cluster"}}' |
    { grep '^sluice-e2e' || true; } | sort -u)
  for cluster in $leftovers; do
    echo "pytest-lanes: deleting kind cluster $cluster, left by an earlier run"
    SLUICE_KIND_CLUSTER=$cluster bash scripts/kind.sh down
  done
fi

lane1_log=$(mktemp "${TMPDIR:-/tmp}/sluice-pytest-lane1.XXXXXX")
"$pytest" "$@" "${lane1[@]}" >"$lane1_log" 2>&1 </dev/null &
lane1_pid=$!
# An interrupted run stops lane 1 too (lane 2 gets the terminal's signal itself).
trap 'kill "$lane1_pid" 2>/dev/null || true; rm -f "$lane1_log"' EXIT

echo "pytest-lanes: ${lane1[*]} run beside this output (pid $lane1_pid); their report follows it"
lane2_status=0
"$pytest" "$@" "${lane2[@]}" || lane2_status=$?
lane1_status=0
wait "$lane1_pid" || lane1_status=$?

echo
echo "===== pytest-lanes: ${lane1[*]} (ran beside the tiers above): exit status $lane1_status ====="
cat "$lane1_log"
echo "===== pytest-lanes: ${lane2[*]}: exit status $lane2_status; ${lane1[*]}: exit status $lane1_status ====="
[ "$lane2_status" -eq 0 ] && [ "$lane1_status" -eq 0 ]
