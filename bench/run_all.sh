#!/usr/bin/env bash
# Run every benchmark, one after the other (they share a 2-core box: never in parallel).
#
#   bash bench/run_all.sh           # every benchmark at full size (about 15 minutes)
#   bash bench/run_all.sh --quick   # CI-sized (a few minutes)
#
# docs/performance.md itself is written by `bench/perf_report.py` (which runs these and more).
#
# PYTHON overrides the interpreter (default: the project's .venv).  Every benchmark runs even
# if an earlier one failed; the exit status is 1 if any of them missed its target.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "--quick" ]]; then
    runs=(
        "bench/pagination.py --sizes 200,2000"
        "bench/sync_changes.py --quick"
        "bench/sync_changes.py --quick --realistic-budget"
        "bench/part_usage.py --quick"
    )
else
    runs=(
        "bench/pagination.py --sizes 1000,10000"
        "bench/sync_changes.py --size 2000"
        "bench/sync_changes.py --size 2000 --realistic-budget"
        "bench/sync_changes.py --size 2000 --spread 60"
        "bench/part_usage.py"
    )
fi

status=0
for run in "${runs[@]}"; do
    echo "=================================================================================="
    echo "\$ $PY $run"
    echo
    # shellcheck disable=SC2086  # word splitting of the argument list is intended
    if ! "$PY" $run; then
        status=1
    fi
    echo
done
exit "$status"
