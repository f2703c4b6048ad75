#!/usr/bin/env bash
# Build fastsynth._native with AddressSanitizer + UndefinedBehaviorSanitizer into
# build/sanitize (the editable install in .venv keeps its normal build) and run the
# native-heavy tests, then a short fuzz run of the native targets, against it.
# Any sanitizer report aborts the process, so the step fails on the first finding.
#
#   bash scripts/sanitize.sh              # build + tests + 20 s of native fuzzing
#   FUZZ_SECONDS=0 bash scripts/sanitize.sh   # build + tests only
# See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BUILD=build/sanitize
start=$SECONDS

cmake -S . -B "$BUILD" -G Ninja -DFASTSYNTH_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPython_EXECUTABLE="$PWD/$PY" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
so="$(ls "$PWD/$BUILD"/_native*.so)"
echo "sanitized build ready after $((SECONDS - start)) s: $so"

# CPython is not built with ASan: the runtime must come first (LD_PRELOAD), and its leak
# checker would report the interpreter's own never-freed objects, so it stays off.
# libstdc++ is preloaded too: ASan must find the real __cxa_throw at start-up, or the
# first C++ exception (every ValueError the bindings raise) aborts in its interceptor.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_init_order=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export FASTSYNTH_NATIVE="$so"     # read by fuzz/native_override.py
export OMP_WAIT_POLICY=PASSIVE

# Tests of the native hot paths (every binding is called from at least one of them).
tests=(tests/test_compression.py tests/test_heuristics.py tests/test_minhash.py
       tests/test_lsh.py tests/test_parallel.py tests/test_quant_matvec.py
       tests/test_dedup.py tests/test_fuzz_regressions.py)
for t in tests/test_pack*.py tests/test_train_pack*.py; do [ -e "$t" ] && tests+=("$t"); done
PYTHONPATH="$PWD/fuzz${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pytest -q -p no:cacheprovider \
  -p native_override -m "not slow" "${tests[@]}"
echo "sanitized tests passed after $((SECONDS - start)) s"

if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  "$PY" fuzz/run.py --native "$so" --total "${FUZZ_SECONDS:-20}" --only-native
fi
echo "sanitizer step passed in $((SECONDS - start)) s (zero findings)"
