"""MinHash signatures and LSH clustering: fastsynth vs datasketch and rensa, same run.

Groups (floors.toml [dedup_*] gates the ratios):
- dedup_minhash: text -> 128-permutation signatures of word 5-grams on the built-in corpus
  (real text: Python's documentation) tiled to FASTSYNTH_BENCH_DEDUP_MB (default 40) MB.
  Anchors do their shingling in Python (lower-case, strip punctuation, split, join
  5-grams), as their users must: datasketch 2.0 ``MinHash.update_batch`` with shared
  permutations, and rensa ``RMinHash.digest_matrix_from_token_sets`` (its batch API;
  rensa may use several threads inside). Ours: fs.minhash fast scheme on 1 thread and on
  all threads, and compat="datasketch" (SHA-1) on 1 thread.
- dedup_lsh: LSH at threshold 0.8 (bands=9, rows=13) plus connected components over
  FASTSYNTH_BENCH_LSH_N (default 50,000) signatures with planted near-duplicates:
  datasketch MinHashLSH insert + query + a Python union-find, vs cluster_signatures.
  The two partitions are asserted equal. Peak memory at 1M signatures is measured by
  benchmarks/run_dedup_memory.py (pytest-benchmark does not measure memory).
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import fastsynth as fs
from conftest import fresh_strings
from fastsynth.dedup import cluster_signatures
from fastsynth.dedup.baseline import datasketch_components

datasketch = pytest.importorskip("datasketch")

_PUNCT = re.compile(r"[^\w\s]")


def python_shingles(text: str, n: int = 5) -> list[str]:
    words = _PUNCT.sub("", text.lower()).split()
    if len(words) <= n:
        return [" ".join(words)] if words else []
    return [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]


@pytest.fixture(scope="session")
def dedup_corpus(python_docs) -> list[str]:
    size = sum(len(t.encode("utf-8")) for t in python_docs)
    target = int(float(os.environ.get("FASTSYNTH_BENCH_DEDUP_MB", "40")) * 1e6)
    return (python_docs * (-(-target // size)))


def _run(benchmark, fn, texts, rounds=3):
    benchmark.extra_info["docs"] = len(texts)
    benchmark.extra_info["mb"] = round(sum(len(t.encode()) for t in texts) / 1e6, 1)
    return benchmark.pedantic(fn, setup=lambda: ((fresh_strings(texts),), {}), rounds=rounds, iterations=1)


def datasketch_signatures(texts: list[str]) -> np.ndarray:
    perms = datasketch.MinHash(128, seed=1).permutations
    out = np.empty((len(texts), 128), dtype=np.uint32)
    for i, t in enumerate(texts):
        m = datasketch.MinHash(128, seed=1, permutations=perms, scheme="affine32")
        m.update_batch([s.encode("utf-8") for s in python_shingles(t)])
        out[i] = m.hashvalues
    return out


@pytest.mark.benchmark(group="dedup_minhash")
def test_minhash_datasketch_update_batch(benchmark, dedup_corpus):
    sigs = _run(benchmark, datasketch_signatures, dedup_corpus, rounds=1)
    # same semantics on ASCII-only text, where both normalisations agree
    sample = [t for t in dedup_corpus[:200] if t.isascii() and "_" not in t][:20]
    ours = fs.minhash(sample, compat="datasketch")
    assert np.array_equal(ours, datasketch_signatures(sample))
    assert sigs.shape == (len(dedup_corpus), 128)


@pytest.mark.benchmark(group="dedup_minhash")
def test_minhash_rensa_python_shingling(benchmark, dedup_corpus):
    rensa = pytest.importorskip("rensa")

    def run(texts):
        return rensa.RMinHash.digest_matrix_from_token_sets([python_shingles(t) for t in texts], 128, 1)

    _run(benchmark, run, dedup_corpus, rounds=1)


@pytest.mark.benchmark(group="dedup_minhash")
def test_minhash_fast_1_thread(benchmark, dedup_corpus):
    sigs = _run(benchmark, lambda t: fs.minhash(t, threads=1), dedup_corpus)
    assert sigs.shape == (len(dedup_corpus), 128)


@pytest.mark.benchmark(group="dedup_minhash")
def test_minhash_fast_all_threads(benchmark, dedup_corpus):
    sigs = _run(benchmark, lambda t: fs.minhash(t), dedup_corpus)
    assert np.array_equal(sigs[:500], fs.minhash(dedup_corpus[:500], threads=1))


@pytest.mark.benchmark(group="dedup_minhash")
def test_minhash_compat_1_thread(benchmark, dedup_corpus):
    _run(benchmark, lambda t: fs.minhash(t, compat="datasketch", threads=1), dedup_corpus, rounds=1)


# ---- LSH + clustering ------------------------------------------------------------------

def planted_signatures(n: int, dup_frac: float = 0.2, seed: int = 0) -> np.ndarray:
    """Random signatures, with dup_frac of the rows copies of earlier rows in which 5% of
    the values were redrawn (estimated Jaccard ~0.95: found by LSH at 0.8 almost surely)."""
    rng = np.random.default_rng(seed)
    sigs = rng.integers(0, 2**32, size=(n, 128), dtype=np.uint32)
    dups = rng.choice(np.arange(n // 10, n), int(n * dup_frac), replace=False)
    src = rng.integers(0, n // 10, dups.size)
    sigs[dups] = sigs[src]
    mask = rng.random((dups.size, 128)) < 0.05
    sigs[dups] = np.where(mask, rng.integers(0, 2**32, size=(dups.size, 128), dtype=np.uint32), sigs[dups])
    return sigs


@pytest.fixture(scope="session")
def lsh_signatures() -> np.ndarray:
    return planted_signatures(int(os.environ.get("FASTSYNTH_BENCH_LSH_N", "50000")))


def datasketch_clusters(sigs: np.ndarray) -> np.ndarray:
    return datasketch_components(sigs, threshold=0.8)


@pytest.mark.benchmark(group="dedup_lsh")
def test_lsh_datasketch_insert_query_unionfind(benchmark, lsh_signatures):
    benchmark.extra_info["signatures"] = len(lsh_signatures)
    labels = benchmark.pedantic(datasketch_clusters, args=(lsh_signatures,), rounds=1, iterations=1)
    ours = cluster_signatures(lsh_signatures, 0.8)
    assert np.array_equal(ours.cluster_id, labels)  # the same partition (lowest index as label)


@pytest.mark.benchmark(group="dedup_lsh")
def test_lsh_fastsynth_cluster_signatures(benchmark, lsh_signatures):
    benchmark.extra_info["signatures"] = len(lsh_signatures)
    res = benchmark.pedantic(cluster_signatures, args=(lsh_signatures, 0.8), rounds=3, iterations=1)
    assert res.n_removed > 0.15 * len(lsh_signatures)
