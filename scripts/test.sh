#!/usr/bin/env bash
# Set up .venv with the test extras, run the test suite, then the benchmark gate
# (benchmarks not marked slow, ratios checked against benchmarks/floors.toml).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test,llm,plan,report,ray || { echo "set-up failed"; exit 1; }

# OpenMP threads that spin while waiting steal the cores from each other when tests
# start subprocesses (servers, CLIs) beside torch; passive waiting avoids ~10x slowdowns.
OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating this as a failure (the suite must not be empty)"
  exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

json="$(mktemp --suffix=.json)"
(cd benchmarks && ../.venv/bin/python -m pytest . -q -p no:cacheprovider -m "not slow" \
   --benchmark-json="$json" --benchmark-columns=median,iqr,rounds)
bstatus=$?
if [ "$bstatus" -ne 0 ]; then echo "benchmarks failed (exit $bstatus)"; exit 1; fi
.venv/bin/python benchmarks/gate.py "$json"
