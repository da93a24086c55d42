#!/usr/bin/env bash
# `make test`'s pytest run: every tier, as pytest processes running side by side.
#
#   lane 0: tests/unit, started at once, beside the set-up command (--setup: the Go builds, the images, the kind node
#           image, minutes of compiling on a cold machine); the unit tier needs only Spark's JVM and mostly waits on
#           it (a run alone here: 390 s, 92 CPU s), so it costs the builds little; its report is printed at the end
#   lane 1: tests/charts tests/k8s tests/chaos, then tests/bench — a control plane that mostly waits (the
#           operator's reconcile passes, the API server's answers), the chaos tier (jobs, the broker and the operator
#           killed and restarted), then the quick benchmark (one program), which runs beside the end of lane 2
#   lane 2: tests/integration tests/images tests/e2e, in that order — Spark, Kafka, Docker and kind; its e2e tier
#           spends much of its time waiting on pods and windows, which the benchmark's drains fill
#
# Lanes 1 and 2 start once the set-up has succeeded. Each process starts the session fixtures its tiers use (a Kafka
# broker, a Spark session, a control plane: each on its own free ports and temp dirs). Lane 2's output streams; the
# reports of lanes 1 and 0 are printed once all have ended. The exit status is non-zero when the set-up or any lane
# fails, so a failed test in any lane fails the run.
#
# Usage: scripts/pytest-lanes.sh [--setup COMMAND] PYTEST [PYTEST_ARGS...]   (COMMAND runs with bash -c; the
#        arguments go to every pytest process; select tests with the per-tier targets, `make test-unit` and so on,
#        or with pytest itself)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage="usage: scripts/pytest-lanes.sh [--setup COMMAND] PYTEST [PYTEST_ARGS...]"
setup=true
if [ "${1:-}" = --setup ]; then
  [ $# -ge 2 ] || {
    echo "$usage" >&2
    exit 2
  }
  setup=$2
  shift 2
fi
[ $# -ge 1 ] || {
  echo "$usage" >&2
  exit 2
}
pytest=$1
shift
lane0=(tests/unit)
lane1=(tests/charts tests/k8s tests/chaos tests/bench)
lane2=(tests/integration tests/images tests/e2e)
# A new tier must be given a lane, not skipped unnoticed.
for dir in tests/*/; do
  dir=${dir%/}
  case " ${lane0[*]} ${lane1[*]} ${lane2[*]} " in *" $dir "*) continue ;; esac
  if compgen -G "$dir/test_*.py" >/dev/null; then
    echo "pytest-lanes: error: $dir holds tests but is in no lane; add it to lane0, lane1 or lane2 in $0" >&2
    exit 2
  fi
done

lane0_log=$(mktemp "${TMPDIR:-/tmp}/sluice-pytest-lane0.XXXXXX")
lane1_log=$(mktemp "${TMPDIR:-/tmp}/sluice-pytest-lane1.XXXXXX")
lane0_pid='' lane1_pid=''
# An interrupted or failed run stops the lanes in the background too (lane 2 gets the terminal's signal itself).
trap 'kill $lane0_pid $lane1_pid 2>/dev/null || true; rm -f "$lane0_log" "$lane1_log"' EXIT

"$pytest" "$@" "${lane0[@]}" >"$lane0_log" 2>&1 </dev/null &
lane0_pid=$!
echo "pytest-lanes: ${lane0[*]} runs beside the set-up (pid $lane0_pid); its report follows the others"
setup_status=0
bash -c "$setup" || setup_status=$?
if [ "$setup_status" -ne 0 ]; then
  echo "pytest-lanes: the set-up ($setup) failed with exit status $setup_status; no further tier runs" >&2
  exit "$setup_status"
fi

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

"$pytest" "$@" "${lane1[@]}" >"$lane1_log" 2>&1 </dev/null &
lane1_pid=$!

echo "pytest-lanes: ${lane1[*]} run beside this output (pid $lane1_pid); their report follows it"
lane2_status=0
"$pytest" "$@" "${lane2[@]}" || lane2_status=$?
lane1_status=0
wait "$lane1_pid" || lane1_status=$?
lane0_status=0
wait "$lane0_pid" || lane0_status=$?

echo
echo "===== pytest-lanes: ${lane1[*]} (ran beside the tiers above): exit status $lane1_status ====="
cat "$lane1_log"
echo
echo "===== pytest-lanes: ${lane0[*]} (ran beside the set-up): exit status $lane0_status ====="
cat "$lane0_log"
echo "===== pytest-lanes: ${lane2[*]}: exit status $lane2_status; ${lane1[*]}: exit status $lane1_status;" \
  "${lane0[*]}: exit status $lane0_status ====="
[ "$lane2_status" -eq 0 ] && [ "$lane1_status" -eq 0 ] && [ "$lane0_status" -eq 0 ]
