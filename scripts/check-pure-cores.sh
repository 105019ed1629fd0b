#!/usr/bin/env bash
# The pure cores take time and randomness from their callers (so a simulation or a table test
# replays exactly): no wall or monotonic clock, no sleeping, no unseeded randomness in them.
# Run by .ci/run before the tests; prints each offending line and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

CORES=(
    Sources/Raft/Core
    Sources/Orchestrator/Scheduler/Scheduler.swift
    Sources/Orchestrator/Scheduler/Filters.swift
    Sources/Orchestrator/Scheduler/PlacementPlanner.swift
    Sources/Orchestrator/Health
    Sources/Orchestrator/Reconciler/Reconciler.swift
    Sources/Agent/Supervisor.swift
    Tests/Support/Linearizability
)
# Clocks, sleeps, and generators that are not passed in.
FORBIDDEN='Date\(\)|Date\.now|DispatchTime\.now|ContinuousClock|SuspendingClock|clock_gettime|gettimeofday|Task\.sleep|SystemRandomNumberGenerator|arc4random'

found="$(grep -rnE "$FORBIDDEN" "${CORES[@]}" | grep -vE '^[^:]+:[0-9]+:\s*///' || true)"
# `.random(...)` draws from the system generator unless it is given one (`using:`).
unseeded="$(grep -rnE '\.random\(' "${CORES[@]}" | grep -v 'using:' | grep -vE '^[^:]+:[0-9]+:\s*///' || true)"
# A pure core decides; the shell around it waits and writes: no async code, no store in a core.
io="$(grep -rnE '\basync\b|\bawait\b|ClusterRepository|ClusterStore' "${CORES[@]}" | grep -vE '^[^:]+:[0-9]+:\s*///' || true)"
if [[ -n "$found$unseeded$io" ]]; then
    echo "check-pure-cores: a pure core reads a clock, sleeps, draws unseeded randomness or does I/O; inject it or move it to the shell:" >&2
    printf '%s\n' "$found" "$unseeded" "$io" | sed '/^$/d' >&2
    exit 1
fi
echo "check-pure-cores: ${CORES[*]}: no clock, sleep, unseeded randomness or I/O"
