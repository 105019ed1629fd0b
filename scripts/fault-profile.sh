#!/usr/bin/env bash
# The fault suite's long profile (issue 15): runs the register fault tests (leader and follower
# kill, leader pause, leader partition, one-way cut, crash in a disk write) again and again, each
# run with a new seed and a longer workload in which the faults repeat, then writes a report:
# runs, faults, operations checked, violations (zero expected).
#
#   scripts/fault-profile.sh [--runs N] [--seconds S] [--filter F] [--report FILE] [--skip-build]
#
# Defaults: ORCH_FAULT_RUNS or 20 runs, ORCH_FAULT_SECONDS or 60 s of workload per test, the whole
# suite (`--filter RegisterLinearizabilityTests`), the report in docs/fault-profile-report.md. The log of
# every failing run is kept in fault-profile-logs/ with its seed (replay one test with
# `ORCH_FAULT_SEED=SEED ORCH_FAULT_SECONDS=S swift test --filter NAME`). Exits non-zero when any
# run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${ORCH_FAULT_RUNS:-20}
seconds=${ORCH_FAULT_SECONDS:-60}
filter=RegisterLinearizabilityTests
report=docs/fault-profile-report.md
build=1
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --filter) filter=$2; shift 2 ;;
        --report) report=$2; shift 2 ;;
        --skip-build) build=0; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

if ((build)); then swift build --build-tests; fi
logs=fault-profile-logs
mkdir -p "$logs"
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
failed_runs=0
started=$SECONDS
for ((run = 1; run <= runs; run++)); do
    seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
    log="$logs/run-$run-seed-$seed.log"
    echo "fault-profile: run $run/$runs, seed $seed, $seconds s per test"
    if ORCH_FAULT_SEED=$seed ORCH_FAULT_SECONDS=$seconds ORCH_FAULT_REPORT=$lines \
        swift test --skip-build --filter "$filter" >"$log" 2>&1; then
        rm -f "$log"
    else
        failed_runs=$((failed_runs + 1))
        echo "fault-profile: run $run FAILED (seed $seed): $log"
    fi
done

# One line per test run: fault-run test=NAME seed=S seconds=S faults=N operations=N completed=N
# timedout=N violations=N verdict=V problems=N wall=D
{
    echo "# Fault profile report"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'): $runs runs of \`$filter\`, $seconds s of workload per test, $((SECONDS - started)) s in all; $failed_runs failed runs."
    echo
    echo "| test | runs | faults | operations checked | completed | timed out | violations | other problems | not linearizable or undecided |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    awk '
        /^fault-run / {
            delete f
            for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
            t = f["test"]; if (!(t in runs)) order[++n] = t
            runs[t]++; faults[t] += f["faults"]; ops[t] += f["operations"]; done[t] += f["completed"]
            timedout[t] += f["timedout"]; viol[t] += f["violations"]; probs[t] += f["problems"]
            if (f["verdict"] != "linearizable") bad[t]++
        }
        END {
            for (i = 1; i <= n; i++) {
                t = order[i]
                printf "| %s | %d | %d | %d | %d | %d | %d | %d | %d |\n", t, runs[t], faults[t], ops[t], done[t], timedout[t], viol[t], probs[t], bad[t] + 0
                R += runs[t]; F += faults[t]; O += ops[t]; D += done[t]; T += timedout[t]; V += viol[t]; P += probs[t]; B += bad[t]
            }
            printf "| **all** | %d | %d | %d | %d | %d | %d | %d | %d |\n", R, F, O, D, T, V, P, B + 0
        }' "$lines"
    echo
    echo "A test run that failed before its history was checked (a cluster that did not recover, say) has no line above: see the failed runs' logs in $logs/."
} >"$report"
cat "$report"
((failed_runs == 0))
