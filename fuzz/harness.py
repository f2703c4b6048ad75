"""What every fuzz target shares: the failure type, open defects, and the atheris entry.

A target module defines ``check(data: bytes) -> None`` that decodes ``data`` (see
:mod:`bytesource`), calls one fastsynth entry point and raises :class:`Finding` when an
invariant of that entry point fails. Any other exception escaping ``check`` is a finding
too (an exception type the entry point must never raise). ``KNOWN`` maps the kinds of
findings that are open defects, already reproduced by a strict ``xfail`` test in
``tests/test_fuzz_regressions.py``, to that test's name: the fuzzer notes them once and
carries on, so a campaign finds the next defect instead of the same one again. Set
``FUZZ_STRICT=1`` to fail on them too. When a defect is fixed its xfail test passes,
which fails the suite (strict) until the entry is removed from both places.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import native_override  # noqa: E402,F401  (binds the sanitized _native when asked, before fastsynth)

_seen: set[str] = set()


class Finding(AssertionError):
    """An invariant of the entry point under test does not hold for this input."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"[{kind}] {message}")
        self.kind = kind


def run_one(check: Callable[[bytes], None], known: dict[str, str], data: bytes) -> None:
    """Run ``check`` on ``data``; swallow (and note once) findings that are open defects."""
    try:
        check(data)
    except Finding as f:
        if f.kind not in known or os.environ.get("FUZZ_STRICT") == "1":
            raise
        if f.kind not in _seen:
            _seen.add(f.kind)
            print(f"fuzz: known open defect {f.kind} (reproduced by {known[f.kind]}): {f}",
                  file=sys.stderr, flush=True)


def instrumented() -> contextlib.AbstractContextManager:
    """Wrap a target's fastsynth imports: under the fuzzer (the target run as a script),
    atheris instruments their bytecode for coverage feedback; under pytest it does nothing.
    (The native module gets no coverage feedback: see docs/fuzzing.md.)"""
    main_file = getattr(sys.modules.get("__main__"), "__file__", "") or ""
    if Path(main_file).name.startswith("fuzz_") and os.environ.get("FUZZ_INSTRUMENT", "1") == "1":
        import atheris

        return atheris.instrument_imports(include=["fastsynth"])
    return contextlib.nullcontext()


def main(check: Callable[[bytes], None], known: dict[str, str]) -> None:
    """The atheris entry point: ``python fuzz/fuzz_X.py [libFuzzer args] [corpus dirs]``."""
    import atheris

    # The target's own functions are instrumented too: the native module gives the fuzzer
    # no coverage (docs/fuzzing.md), so the branches of a target's decoding and checks are
    # what tells a native target's inputs apart.
    target = sys.modules[check.__module__]
    for name, obj in list(vars(target).items()):
        if callable(obj) and getattr(obj, "__module__", None) == check.__module__ \
                and hasattr(obj, "__code__"):
            setattr(target, name, atheris.instrument_func(obj))
    check = getattr(target, check.__name__)
    import bytesource

    for name, obj in list(vars(bytesource.ByteSource).items()):
        if hasattr(obj, "__code__"):
            setattr(bytesource.ByteSource, name, atheris.instrument_func(obj))
    atheris.Setup(sys.argv, lambda data: run_one(check, known, data))
    atheris.Fuzz()
