"""The vllm backend: runs where vllm is importable (GPU machines); elsewhere the factory must
say which extra to install."""
from __future__ import annotations

import importlib.util

import pytest

import fastsynth.llm as llm
from fastsynth.errors import DependencyError

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_vllm_names_the_extra():
    with pytest.raises(DependencyError, match=r"fastsynth\[vllm\]"):
        llm.generator("vllm", model="any")


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (GPU-only extra)")
def test_vllm_generates_from_a_fastsynth_checkpoint(tmp_path):  # pragma: no cover
    from fastsynth.model import load, save_hf
    model, tok = load()
    save_hf(model, tmp_path, tokenizer=tok)
    g = llm.generator("vllm", model=str(tmp_path), gpu_memory_utilization=0.3)
    reqs = [[{"role": "user", "content": "What is the capital of France?"}],
            [{"role": "user", "content": "x " * 20000}]]
    out = g.generate(reqs, max_tokens=16)
    assert "Paris" in out[0].text and out[0].completion_tokens > 0
    assert out[1].finish_reason == "error"
