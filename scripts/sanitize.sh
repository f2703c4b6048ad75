#!/usr/bin/env bash
# Build fastsynth._native with AddressSanitizer + UndefinedBehaviorSanitizer into
# build/sanitize (the editable install in .venv keeps its normal build) and run the
# native-heavy tests, then a short fuzz run of the native targets, against it.
# Any sanitizer report aborts the process, so the step fails on the first finding.
#
#   bash scripts/sanitize.sh              # build + tests + 20 s of native fuzzing
#   SANITIZE_FUZZ_SECONDS=0 bash scripts/sanitize.sh   # build + tests only
# See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BUILD=build/sanitize
start=$SECONDS

gen=()
command -v ninja >/dev/null && [ ! -f "$BUILD/Makefile" ] && gen=(-G Ninja)
cmake -S . -B "$BUILD" "${gen[@]}" -DFASTSYNTH_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPython_EXECUTABLE="$PWD/$PY" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
so="$(ls "$PWD/$BUILD"/_native*.so)"
echo "sanitized build ready after $((SECONDS - start)) s: $so"

# CPython is not built with ASan: the runtime must come first (LD_PRELOAD), and its leak
# checker would report the interpreter's own never-freed objects, so it stays off.
# libstdc++ is preloaded too: ASan must find the real __cxa_throw at start-up, or the
# first C++ exception (every ValueError the bindings raise) aborts in its interceptor.
reports="$PWD/$BUILD/reports"
rm -rf "$reports" && mkdir -p "$reports"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
export FASTSYNTH_NATIVE="$so"     # read by fuzz/native_override.py
export OMP_WAIT_POLICY=PASSIVE
show_reports() {
  local f
  for f in "$reports"/*; do [ -e "$f" ] && { echo "==== $f"; cat "$f"; }; done
}

# The native-heavy tests: every binding is called by at least one of them. Left out: the
# 10k-document datasketch comparison and the three tests that load the embedded model
# (decode logits, greedy generation, backend routing): together ~6 of the ~10 minutes
# these files took under ASan on the loaded 2-core machine, for no native path the kernel
# tests and fuzz seeds miss.
tests=(tests/test_compression.py tests/test_heuristics.py tests/test_minhash.py
       tests/test_lsh.py tests/test_parallel.py tests/test_quant_matvec.py
       tests/test_train_packing.py tests/test_fuzz_regressions.py)
if ! PYTHONPATH="$PWD/fuzz${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pytest -q -p no:cacheprovider \
    -p native_override -m "not slow" -k "not 10k_varied and not decode_logits and not greedy_generation and not local_backend" \
    "${tests[@]}"; then
  show_reports
  echo "sanitized tests failed (reports above, if any)"
  exit 1
fi
echo "sanitized tests passed after $((SECONDS - start)) s"

if [ "${SANITIZE_FUZZ_SECONDS:-20}" != 0 ]; then
  if ! "$PY" fuzz/run.py --native "$so" --total "${SANITIZE_FUZZ_SECONDS:-20}" --only-native; then
    show_reports
    exit 1
  fi
fi
if compgen -G "$reports/*" >/dev/null; then show_reports; echo "sanitizer reports found"; exit 1; fi
echo "sanitizer step passed in $((SECONDS - start)) s (zero findings)"
