#!/usr/bin/env bash
# Every GPU check of the project, in one command, on a bare CUDA machine with torch and triton
# (no network needed): builds the native extension (the MinHash check's CPU side) in the
# background, times the attention tile candidates (benchmarks/gpu/_tile_sweep.py), runs the
# check suite (benchmarks/gpu/run.py) with the best tiles, then the CUDA cases of the kernel
# tests. Everything lands in $OUT (default ./gpu-out): log.txt, build.log, sweep.json,
# tiles.json, gpu.json. Sized for one GPU-time slot (~8 minutes on an H100/H200).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import sys, torch, triton; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__)"
  nproc; } >"$LOG" 2>&1

# a machine without zlib's headers builds against copies carried in .gpu/include
if [ ! -e /usr/include/zlib.h ] && [ -e .gpu/include/zlib.h ]; then
    lib=$(ls /usr/lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1 2>/dev/null | head -1)
    export CMAKE_ARGS="-DZLIB_INCLUDE_DIR=$PWD/.gpu/include -DZLIB_LIBRARY=$lib"
fi
(CMAKE_BUILD_PARALLEL_LEVEL=4 timeout 300 "$PY" -m pip install --no-build-isolation --no-deps \
    --no-index -q . >"$OUT/build.log" 2>&1; echo "build rc $?" >>"$OUT/build.log") &
build=$!

if [ "${SWEEP:-1}" = 1 ]; then     # SWEEP=0: the built-in tiles
    echo "== tile sweep $(date -u +%T)" >>"$LOG"
    timeout "${SWEEP_S:-170}" "$PY" benchmarks/gpu/_tile_sweep.py --out "$OUT/sweep.json" \
        --tiles "$OUT/tiles.json" --workers "${WORKERS:-11}" >>"$LOG" 2>&1
    echo "sweep rc $?" >>"$LOG"
fi
wait "$build"
tail -3 "$OUT/build.log" >>"$LOG"
if ! "$PY" -c "import fastsynth._native" 2>/dev/null; then
    # no extension: the checks and tests that need it fail and say so; the rest run from source
    ln -sfn ../../kernels python/fastsynth/kernels
    export PYTHONPATH=$PWD/python
fi
if [ -s "$OUT/tiles.json" ]; then export FASTSYNTH_ATTENTION_TILES=$OUT/tiles.json; fi

echo "== suite $(date -u +%T) tiles=${FASTSYNTH_ATTENTION_TILES:-built-in}" >>"$LOG"
timeout "${SUITE_S:-270}" "$PY" benchmarks/gpu/run.py --out "$OUT/gpu.json" --budget-s 210 >>"$LOG" 2>&1
echo "suite rc $?" >>"$LOG"

echo "== tests $(date -u +%T)" >>"$LOG"
# the CUDA cases (the interpreter cases run in CI on the CPU)
timeout "${TESTS_S:-120}" "$PY" -m pytest -q -n 7 -p no:cacheprovider tests/test_kernels_attention.py \
    -k cuda >>"$LOG" 2>&1
echo "tests rc $? $(date -u +%T)" >>"$LOG"
