"""fastsynth: plan, build and train on data for small language models.

Data flows one way: corpus -> quality -> dedup -> synth -> train -> plan/report.
Submodules that need optional dependencies (torch for ``model``/``train``/``llm``)
are imported lazily on first attribute access, so ``import fastsynth`` stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from fastsynth import corpus, errors, quality  # noqa: E402  (light, always loaded)
from fastsynth.quality import gzip_ratio  # noqa: E402

_LAZY_MODULES = {"dedup", "plan", "model", "llm", "synth", "train", "kernels", "pipeline", "report"}
_LAZY_NAMES = {"minhash": "dedup"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f"fastsynth.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"fastsynth.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'fastsynth' has no attribute {name!r}")


__all__ = ["__version__", "corpus", "errors", "quality", "gzip_ratio", "minhash"]
