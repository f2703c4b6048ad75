"""The Llama-family model shared by training and generation.

``LlamaConfig.preset(name)`` gives published shapes; ``Llama(config)`` builds the module;
``load(path)`` reads GGUF or HF safetensors weights (default: the embedded SmolLM2-135M);
``save_hf(model, dir)`` writes a checkpoint transformers and vLLM load.
"""
from __future__ import annotations

from typing import Any

from fastsynth.model.config import PRESETS, LlamaConfig, RopeScaling

_LAZY = {
    "Llama": "fastsynth.model.llama",
    "KVCache": "fastsynth.model.llama",
    "attention": "fastsynth.model.attention",
    "load": "fastsynth.model.loading",
    "default_model_path": "fastsynth.model.loading",
    "save_hf": "fastsynth.model.hf",
    "Tokenizer": "fastsynth.model.tokenizer",
    "generate": "fastsynth.model.generation",
}


def __getattr__(name: str) -> Any:  # torch-heavy parts load on first use
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastsynth.model' has no attribute {name!r}")


__all__ = ["PRESETS", "LlamaConfig", "RopeScaling", *_LAZY]
