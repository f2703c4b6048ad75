"""fastsynth: plan, build and train on data for small language models.

Data flows one way: corpus -> quality -> dedup -> synth -> train -> plan, and the run
layer (``fastsynth.run``) puts the steps together (docs/architecture.md). The package
root imports nothing but its version: every subpackage and the top-level shortcuts
(``fs.gzip_ratio``, ``fs.minhash``) load on first attribute access, so ``import
fastsynth`` is instant and pulls in neither numpy nor torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from fastsynth._version import __version__

_SUBPACKAGES = frozenset({"atomic", "corpus", "errors", "progress", "quality", "dedup", "plan",
                          "model", "llm", "synth", "train", "kernels", "run", "report"})
# Top-level shortcuts: name -> the module that defines it.
_SHORTCUTS = {"gzip_ratio": "fastsynth.quality", "minhash": "fastsynth.dedup"}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"fastsynth.{name}")
    if name in _SHORTCUTS:
        return getattr(importlib.import_module(_SHORTCUTS[name]), name)
    raise AttributeError(f"module 'fastsynth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBPACKAGES | set(_SHORTCUTS))


__all__ = ["__version__", "corpus", "errors", "quality", "gzip_ratio", "minhash"]
