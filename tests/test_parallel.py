"""The native worker pool (csrc/parallel.h): results do not depend on the thread count, loops
started from several Python threads at once all complete (the pool runs one, the others start
their own threads), errors raised in workers reach the caller, and a forked child gets a pool
of its own (its parent's workers do not exist in it)."""
from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np
import pytest

import fastsynth as fs
from fastsynth import _native

DOCS = [f"document {i} " + "some words repeated here " * (i % 17 + 1) for i in range(3000)]


def test_thread_counts_agree():
    one = fs.minhash(DOCS, threads=1)
    for t in (2, 3, 8):
        assert np.array_equal(fs.minhash(DOCS, threads=t), one)


def test_concurrent_callers_all_complete():
    want = fs.minhash(DOCS, threads=1)
    results, errors = [None] * 6, []

    def call(k):
        try:
            results[k] = fs.minhash(DOCS, threads=2)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=call, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and all(np.array_equal(r, want) for r in results)


def test_worker_errors_reach_the_caller():
    texts = ["fine"] * 5000 + ["bad \ud800"] + ["fine"] * 5000
    with pytest.raises(ValueError, match=r"texts\[5000\]"):
        fs.minhash(texts, threads=2)
    assert fs.minhash(["still works"], threads=2).shape == (1, 128)   # pool still usable


def _child(q):
    q.put(fs.minhash(DOCS, threads=2).tobytes())


def test_forked_child_gets_its_own_pool():
    want = fs.minhash(DOCS, threads=2)          # the parent's pool is running
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    got = q.get(timeout=120)
    p.join(timeout=120)
    assert p.exitcode == 0 and got == want.tobytes()


def test_heuristics_and_gzip_use_the_pool_too():
    texts = DOCS[:500]
    assert np.array_equal(_native.heuristics(texts, 1), _native.heuristics(texts, 2), equal_nan=True)
    assert np.array_equal(fs.gzip_ratio(texts, threads=1), fs.gzip_ratio(texts, threads=2))
