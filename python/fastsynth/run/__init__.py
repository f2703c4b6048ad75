"""The run layer: stages over a resumable run directory, executors, the run's report.

* :mod:`~fastsynth.run.rundir` — the run directory and its manifest;
* :mod:`~fastsynth.run.stage` — the stage abstraction (Map parts, Global steps);
* :mod:`~fastsynth.run.executor` — the local executor;
* :mod:`~fastsynth.run.config` — frozen stage configs, TOML and generated CLI flags;
* :mod:`~fastsynth.run.stages` — the stages of ``fastsynth run``;
* :mod:`~fastsynth.run.pipeline` — their order, presets, and :func:`run`;
* :mod:`~fastsynth.run.report` — the run's report page.

See docs/architecture.md, "The run layer".
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"RunDir": "fastsynth.run.rundir", "PartResult": "fastsynth.run.rundir",
         "RunError": "fastsynth.run.rundir", "Stage": "fastsynth.run.stage",
         "Map": "fastsynth.run.stage", "Global": "fastsynth.run.stage", "Part": "fastsynth.run.stage",
         "LocalExecutor": "fastsynth.run.executor", "run_stage": "fastsynth.run.executor",
         "run": "fastsynth.run.pipeline", "load_config": "fastsynth.run.pipeline",
         "PRESETS": "fastsynth.run.pipeline"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastsynth.run' has no attribute {name!r}")


__all__ = sorted(_LAZY)
