#!/usr/bin/env bash
# Opt-in (not in CI): build fastsynth._native with clang, coverage callbacks for libFuzzer
# and ASan + UBSan into build/fuzz-native, then fuzz the native targets on it, so that
# atheris learns from the C++'s edges as well as from the Python around them.
#
#   bash scripts/fuzz-native.sh                    # build + 120 s over the native targets
#   FUZZ_NATIVE_SECONDS=1800 FUZZ_KEEP=fuzz-work bash scripts/fuzz-native.sh
#   FUZZ_NATIVE_SECONDS=0 bash scripts/fuzz-native.sh     # build only
#
# Needs clang 16 or newer (the sources use __builtin_cpu_supports("f16c"), which clang 14,
# Debian 12's default, rejects): `apt-get install -y clang-19`. Once built, fuzz/run.py
# uses build/fuzz-native by itself while it is newer than csrc/. Why not in CI: installing
# clang-19 took 72 s and the build several minutes on the 2-core machine (docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BUILD=build/fuzz-native
start=$SECONDS

cxx=""
for c in clang++-21 clang++-20 clang++-19 clang++-18 clang++-17 clang++-16 clang++; do
  command -v "$c" >/dev/null || continue
  major="$("$c" -dumpversion | cut -d. -f1)"
  if [ "$major" -ge 16 ]; then cxx="$c"; break; fi
done
if [ -z "$cxx" ]; then
  echo "fuzz-native: needs clang++ 16 or newer (apt-get install -y clang-19)" >&2
  exit 2
fi
cc="${cxx/clang++/clang}"
mkdir -p "$BUILD"

# clang 17+ links code that calls __sanitizer_internal_mem{cpy,move,set}, which the ASan
# runtime atheris ships (an older LLVM) does not define: plain forwards, linked into the
# module itself (not instrumented; ASan still checks the memcpy they call).
shim="$PWD/$BUILD/sanitizer_internal_shim.o"
"$cc" -O2 -fPIC -c -x c -o "$shim" - <<'C'
#include <string.h>
void *__sanitizer_internal_memcpy(void *d, const void *s, size_t n) { return memcpy(d, s, n); }
void *__sanitizer_internal_memmove(void *d, const void *s, size_t n) { return memmove(d, s, n); }
void *__sanitizer_internal_memset(void *d, int c, size_t n) { return memset(d, c, n); }
C

# -fsanitize-trap=undefined: UB becomes a trap instruction, which libFuzzer reports as a
# crash, so the UBSan runtime (not part of atheris' asan_with_fuzzer.so) is not needed.
flags="-fsanitize=fuzzer-no-link -fsanitize-trap=undefined"
gen=()
command -v ninja >/dev/null && [ ! -f "$BUILD/Makefile" ] && gen=(-G Ninja)
cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_CXX_COMPILER="$cxx" \
  -DFASTSYNTH_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_MODULE_LINKER_FLAGS="$shim" \
  -DPython_EXECUTABLE="$PWD/$PY" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
touch "$BUILD"/_native*.so   # newer than csrc/ even when ninja had nothing to do
echo "coverage build ready after $((SECONDS - start)) s ($cxx): $(ls "$BUILD"/_native*.so)"

seconds="${FUZZ_NATIVE_SECONDS:-120}"
if [ "$seconds" != 0 ]; then
  keep=()
  [ -n "${FUZZ_KEEP:-}" ] && keep=(--keep "$FUZZ_KEEP")
  "$PY" fuzz/run.py --only-native --total "$seconds" "${keep[@]}"
fi
