"""Shared benchmark inputs. Every suite compares fastsynth with its anchor in the same
run; benchmarks/gate.py turns the medians into ratios and checks floors.toml."""
from __future__ import annotations

import os
import statistics
import time
import tomllib
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """With ``FASTSYNTH_BENCH_GATE_ONLY=1`` (scripts/test.sh, CI) only the benchmarks that
    floors.toml names run: the others (variants recorded in RESULTS.md, such as the
    one-thread gzip or the bootstrapped law fit) cost CI minutes and gate nothing."""
    if os.environ.get("FASTSYNTH_BENCH_GATE_ONLY", "") not in ("1", "true"):
        return
    floors = tomllib.loads(Path(__file__).with_name("floors.toml").read_text())
    gated = {spec[k] for spec in floors.values() for k in ("anchor", "candidate")}
    keep = [it for it in items if it.name in gated]
    dropped = [it for it in items if it.name not in gated]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def python_docs() -> list[str]:
    """The built-in corpus (real text: Python's own reference documentation)."""
    from fastsynth import corpus

    return [r["text"] for r in corpus.read("builtin:python-docs")]


@pytest.fixture(scope="session")
def python_docs_50mb(python_docs) -> list[str]:
    """The built-in corpus tiled to at least 50 MB of UTF-8. Each document is scored on
    its own, so repeating documents changes the amount of work, not its nature."""
    size = sum(len(t.encode("utf-8")) for t in python_docs)
    target = int(float(os.environ.get("FASTSYNTH_BENCH_MB", "50")) * 1e6)
    reps = -(-target // size)
    return python_docs * reps


def fresh_strings(texts: list[str]) -> list[str]:
    """New str objects with the same content: CPython caches a str's UTF-8 form on first
    use by C code, which would favour the native side in repeated rounds."""
    return [t.encode("utf-8").decode("utf-8") for t in texts]


class Between:
    """Times ``fn(*args)`` before each round of a ``benchmark.pedantic`` call (pass
    ``setup=between``), so an anchor and its candidate alternate and see the same host:
    two benchmarks run a minute apart can differ by ~10% from the shared host's drift alone
    (benchmarks/RESULTS.md, 2026-11-27 07:20-07:41). ``record(benchmark, skip)`` writes the
    median time, leaving out the first ``skip`` runs (those before warm-up rounds), as the
    extra-info key ``between_median_s``, which the gate reads through floors.toml's
    ``anchor_from``."""

    def __init__(self, fn, *args):
        self.fn, self.args, self.times = fn, args, []

    def __call__(self):
        t0 = time.perf_counter()
        self.fn(*self.args)
        self.times.append(time.perf_counter() - t0)

    def record(self, benchmark, skip: int = 0) -> None:
        if len(self.times) > skip:
            benchmark.extra_info["between_median_s"] = statistics.median(self.times[skip:])
