#!/usr/bin/env bash
# `make test`'s pytest run: every tier, as pytest processes running side by side.
#
#   lane 0: tests/unit, started at once, beside the set-up command (--setup: the Go builds, the images, the kind node
#           image, minutes of compiling on a cold machine); the unit tier needs only Spark's JVM and mostly waits on
#           it (a run alone here: 390 s, 92 CPU s), so it costs the builds little; its report is printed at the end
#   lane 1: tests/charts tests/k8s tests/chaos, then tests/bench — a control plane that mostly waits (the
#           operator's reconcile passes, the API server's answers), the chaos tier (jobs, the broker and the operator
#           killed and restarted), then the quick benchmark (one program), which runs beside the end of lane 2
#   lane 2: tests/integration tests/images, then tests/e2e — Spark, Kafka, Docker, then kind; the e2e tier spends
#           much of its time waiting on pods and windows, which the benchmark's drains fill
#
# Lanes 1 and 2 start once the set-up has succeeded. The e2e tier starts once lane 1's first part has ended: a kind
# cluster running a whole pipeline (a broker and three Spark jobs in one node) beside the k8s tier's job restarts and
# the chaos tier's kills starves both on two cores, and their tests wait on time (a stall detected within its
# seconds, a window within its minutes); beside the benchmark it only takes longer. Each pytest process starts the
# session fixtures its tiers use (a Kafka broker, a Spark session, a control plane: each on its own free ports and
# temp dirs). Lane 2's output streams; the reports of lanes 1 and 0 are printed once all have ended. The exit status
# is non-zero when the set-up or any lane fails, so a failed test in any lane fails the run.
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
lane1=(tests/charts tests/k8s tests/chaos)
lane1_then=(tests/bench)
lane2=(tests/integration tests/images)
lane2_then=(tests/e2e)
# A new tier must be given a lane, not skipped unnoticed.
for dir in tests/*/; do
  dir=${dir%/}
  case " ${lane0[*]} ${lane1[*]} ${lane1_then[*]} ${lane2[*]} ${lane2_then[*]} " in *" $dir "*) continue ;; esac
  if compgen -G "$dir/test_*.py" >/dev/null; then
    echo "pytest-lanes: error: $dir holds tests but is in no lane; add it to lane0, lane1 or lane2 in $0" >&2
    exit 2
  fi
done

# CPU share of the containers. On a cgroup v1 host whose processes sit in the root CPU cgroup (no systemd: a container
# or a CI machine like this project's), the scheduler weighs all of Docker's containers together (/docker) as one
# task, or as one session when the kernel groups sessions (autogroup): each broker, Spark JVM and API server the tests
# start in a session of its own then weighs as much as the whole kind cluster. Measured here: a container busy on 2
# cores beside 6 busy sessions got 27 % of the machine; with the sessions in one cgroup, 50 %. A CI run whose kind
# cluster starved this way (API server not answering, broker timing out, load average 72) failed three e2e tests. So
# the lanes run in one CPU cgroup, beside /docker. SLUICE_TEST_CPU_CGROUP names it; empty leaves the processes where
# they are. Nothing is limited: the two groups split the CPU only when both want it all.
cpu_group=${SLUICE_TEST_CPU_CGROUP-sluice-tests}
cpu_root=/sys/fs/cgroup/cpu
if [ -n "$cpu_group" ] && [ -w "$cpu_root/cgroup.procs" ] &&
  grep -Eq '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:/$' /proc/self/cgroup; then
  if mkdir -p "$cpu_root/$cpu_group" && echo $$ >"$cpu_root/$cpu_group/cgroup.procs"; then
    echo "pytest-lanes: the tests run in CPU cgroup /$cpu_group, beside Docker's containers (/docker)"
  else
    echo "pytest-lanes: note: could not move the tests into CPU cgroup $cpu_root/$cpu_group; they run where they are" >&2
  fi
fi

lane0_log=$(mktemp "${TMPDIR:-/tmp}/sluice-pytest-lane0.XXXXXX")
lane1_log=$(mktemp "${TMPDIR:-/tmp}/sluice-pytest-lane1.XXXXXX")
lane1_done=$(mktemp -u "${TMPDIR:-/tmp}/sluice-pytest-lane1-done.XXXXXX")
lane0_pid='' lane1_pid='' lane2_pid=''
# An interrupted run (Ctrl-C, or SIGTERM to this script) stops every lane: each pytest runs in the background (which
# ignores the terminal's Ctrl-C) and is sent SIGTERM here, which makes it leave through its teardown (tests/conftest.py)
# and so stop the brokers, control planes and clusters it started; they are given a minute. Lane 1 is a subshell: its
# running pytest is stopped itself, and the subshell first, so that it cannot start its next part. (A set-up command
# still running is left to end by itself: it is the terminal's Ctrl-C that stops it.)
stop_lanes() {
  local pids="$lane0_pid $lane2_pid" pid waited=0
  if [ -n "$lane1_pid" ]; then
    pids="$pids $(pgrep -P "$lane1_pid" || true)"
    kill "$lane1_pid" 2>/dev/null || true
  fi
  for pid in $pids; do kill "$pid" 2>/dev/null || true; done
  for pid in $pids; do
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 60 ]; do
      sleep 1
      waited=$((waited + 1))
    done
  done
  rm -f "$lane0_log" "$lane1_log" "$lane1_done"
}
trap stop_lanes EXIT

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

# Lane 1: its first part, then (whatever that part's status) the mark lane 2 waits for, then the rest; its status is
# the first non-zero one.
(
  status=0 then=0
  "$pytest" "$@" "${lane1[@]}" || status=$?
  touch "$lane1_done"
  "$pytest" "$@" "${lane1_then[@]}" || then=$?
  [ "$status" -ne 0 ] || status=$then
  exit "$status"
) >"$lane1_log" 2>&1 </dev/null &
lane1_pid=$!

echo "pytest-lanes: ${lane1[*]}, then ${lane1_then[*]}, run beside this output (pid $lane1_pid); their report follows it"
# A part of lane 2: in the background, waited for, so that stop_lanes can stop it.
run_lane2() {
  "$pytest" "$@" </dev/null &
  lane2_pid=$!
  wait "$lane2_pid"
}
lane2_status=0
run_lane2 "$@" "${lane2[@]}" || lane2_status=$?
if [ ! -e "$lane1_done" ] && kill -0 "$lane1_pid" 2>/dev/null; then
  echo "pytest-lanes: ${lane2_then[*]} waits for ${lane1[*]} to end"
  waited=$SECONDS
  while [ ! -e "$lane1_done" ] && kill -0 "$lane1_pid" 2>/dev/null; do sleep 1; done
  echo "pytest-lanes: ${lane2_then[*]} waited $((SECONDS - waited)) s"
fi
then_status=0
run_lane2 "$@" "${lane2_then[@]}" || then_status=$?
[ "$lane2_status" -ne 0 ] || lane2_status=$then_status
lane1_status=0
wait "$lane1_pid" || lane1_status=$?
lane0_status=0
wait "$lane0_pid" || lane0_status=$?
lane0_pid='' lane1_pid='' lane2_pid=''

echo
echo "===== pytest-lanes: ${lane1[*]} ${lane1_then[*]} (ran beside the tiers above): exit status $lane1_status ====="
cat "$lane1_log"
echo
echo "===== pytest-lanes: ${lane0[*]} (ran beside the set-up): exit status $lane0_status ====="
cat "$lane0_log"
echo "===== pytest-lanes: ${lane2[*]} ${lane2_then[*]}: exit status $lane2_status;" \
  "${lane1[*]} ${lane1_then[*]}: exit status $lane1_status;" \
  "${lane0[*]}: exit status $lane0_status ====="
[ "$lane2_status" -eq 0 ] && [ "$lane1_status" -eq 0 ] && [ "$lane0_status" -eq 0 ]
