"""Load fastsynth._native from the file named by ``$FASTSYNTH_NATIVE`` (the sanitized build).

Imported before fastsynth (as a pytest plugin, ``-p native_override`` with ``fuzz/`` on
``PYTHONPATH``, or by ``fuzz/run.py``), it puts that extension module into ``sys.modules``
under ``fastsynth._native``, so ``import fastsynth`` binds the sanitized code while the
editable install in ``.venv`` keeps its normal build (see docs/fuzzing.md).
"""
from __future__ import annotations

import importlib.util
import os
import sys


def install(path: str) -> None:
    """Bind ``fastsynth._native`` to the extension module at ``path`` (before fastsynth loads)."""
    if "fastsynth" in sys.modules:
        raise RuntimeError("native_override must run before fastsynth is imported")
    spec = importlib.util.spec_from_file_location("fastsynth._native", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load an extension module from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["fastsynth._native"] = module
    import fastsynth

    fastsynth._native = module  # the attribute too, for `from fastsynth import _native`
    loaded = sys.modules["fastsynth._native"].__file__
    if os.path.realpath(loaded) != os.path.realpath(path):
        raise RuntimeError(f"fastsynth._native resolved to {loaded}, not {path}")


_PATH = os.environ.get("FASTSYNTH_NATIVE")
if _PATH:
    install(_PATH)


def pytest_report_header(config):  # shown by pytest when used as a plugin
    import fastsynth._native as native

    return f"fastsynth._native: {native.__file__}"
