#!/usr/bin/env bash
# Build the llama.cpp reference used by bench_generate.py's slow llama.cpp comparison
# (issue #16): llama-cpp-python from PyPI, compiled from source for this CPU
# (GGML_NATIVE is the default, so AVX2 etc. are used when present), in its own venv so
# it never touches .venv. It compiles for ~10+ minutes on 2 cores.
#
# Usage: bash benchmarks/setup_llamacpp.sh [VENV_DIR]
#   VENV_DIR defaults to $FASTSYNTH_LLAMACPP_VENV or .llamacpp-venv (repo root).
# The benchmark finds the venv through the same variable/default.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${FASTSYNTH_LLAMACPP_VENV:-.llamacpp-venv}}"
VERSION="${FASTSYNTH_LLAMACPP_VERSION:-0.3.36}"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llama_cpp" >/dev/null 2>&1; then
  echo "llama-cpp-python already installed in $VENV"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
# LLAVA_BUILD=OFF: the multimodal library (mtmd + llama.cpp's common/, ~100 of 178 objects)
# is not needed to decode text; llama_cpp imports it only for multimodal chat handlers.
# nice: the compile must not starve whatever else runs on the machine (on a heavily loaded
# machine nice 19 stretches it past an hour; FASTSYNTH_LLAMACPP_NICE=0 to hurry it).
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
nice -n "${FASTSYNTH_LLAMACPP_NICE:-19}" "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
  --no-binary llama-cpp-python "llama-cpp-python==$VERSION"
"$VENV/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
