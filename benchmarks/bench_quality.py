"""gzip_ratio and Gopher heuristics: native vs plain Python, same inputs, same run.

Groups (see floors.toml for the gated ratios):
- gzip_ratio: Python ``zlib.compress`` loop (anchor) vs native zlib (1 thread, all
  threads; identical output, asserted) and native libdeflate (all threads; sizes differ).
- heuristics: the plain-Python implementation of the same definitions
  (fastsynth.quality._reference, anchor) vs native (1 thread, all threads).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastsynth as fs
from fastsynth.quality import _reference, libdeflate_available
from conftest import fresh_strings


def python_gzip_ratio(texts: list[str], level: int = 6) -> list[float]:
    out = []
    for t in texts:
        b = t.encode("utf-8")
        out.append(len(zlib.compress(b, level)) / len(b) if b else float("nan"))
    return out


def _run(benchmark, fn, texts, rounds=3):
    return benchmark.pedantic(fn, setup=lambda: ((fresh_strings(texts),), {}), rounds=rounds, iterations=1)


# The gzip group's ratios swing with whatever else runs on the host (the Python loop's IQR was
# 25% of its median in a CI run): five rounds give a median that one slow round cannot move.
GZIP_ROUNDS = 5


@pytest.mark.benchmark(group="gzip_ratio")
def test_gzip_python_zlib_loop(benchmark, python_docs_50mb):
    benchmark.extra_info["mb"] = sum(len(t.encode()) for t in python_docs_50mb) / 1e6
    _run(benchmark, python_gzip_ratio, python_docs_50mb, GZIP_ROUNDS)


@pytest.mark.benchmark(group="gzip_ratio")
def test_gzip_native_1_thread(benchmark, python_docs_50mb):
    got = _run(benchmark, lambda t: fs.gzip_ratio(t, threads=1), python_docs_50mb, GZIP_ROUNDS)
    np.testing.assert_array_equal(got[: len(python_docs_50mb) // 20],
                                  python_gzip_ratio(python_docs_50mb[: len(python_docs_50mb) // 20]))


@pytest.mark.benchmark(group="gzip_ratio")
def test_gzip_native_all_threads(benchmark, python_docs_50mb):
    got = _run(benchmark, lambda t: fs.gzip_ratio(t), python_docs_50mb, GZIP_ROUNDS)
    np.testing.assert_array_equal(got, python_gzip_ratio(python_docs_50mb))


@pytest.mark.skipif(not libdeflate_available(), reason="libdeflate not installed")
@pytest.mark.benchmark(group="gzip_ratio")
def test_gzip_libdeflate_all_threads(benchmark, python_docs_50mb):
    got = _run(benchmark, lambda t: fs.gzip_ratio(t, backend="libdeflate"), python_docs_50mb, GZIP_ROUNDS)
    assert np.isfinite(got).all()


@pytest.mark.benchmark(group="heuristics")
def test_heuristics_python_reference(benchmark, python_docs):
    benchmark.extra_info["mb"] = sum(len(t.encode()) for t in python_docs) / 1e6
    _run(benchmark, _reference.heuristics, python_docs)


@pytest.mark.benchmark(group="heuristics")
def test_heuristics_native_1_thread(benchmark, python_docs):
    got = _run(benchmark, lambda t: fs.quality.heuristics(t, threads=1), python_docs)
    want = _reference.heuristics(python_docs[:50])
    np.testing.assert_allclose(got["dup_5gram_char_frac"][:50], want["dup_5gram_char_frac"], rtol=1e-12)


@pytest.mark.benchmark(group="heuristics")
def test_heuristics_native_all_threads(benchmark, python_docs):
    _run(benchmark, lambda t: fs.quality.heuristics(t), python_docs)
