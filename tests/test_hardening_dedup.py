"""Hardening of fastsynth.dedup (issue 15): arguments are checked with the parameter's
name, spill files that were not finished are never read as valid, and spill folders of
killed runs are removed by the next run. Each test failed before its fix."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fastsynth as fs
from fastsynth.dedup import LSHIndex, cluster_signatures, dedup, minhash
from fastsynth.dedup.spill import (HEADER, SpillParams, SpillWriter, read_signatures, read_sets,
                                   write_signatures)
from fastsynth.errors import ConfigError, InputError


def _random_sigs(n: int, num_perm: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**32, (n, num_perm), dtype=np.uint32)


# ---------------------------------------------------------------- argument checks

def test_cluster_signatures_refuses_float_signatures():
    """Was: float signatures were cast to uint32 zeros, so unrelated rows 'matched'."""
    floats = np.random.default_rng(0).random((5, 64))
    with pytest.raises(ConfigError, match="uint32"):
        cluster_signatures(floats)
    with pytest.raises(ConfigError, match="uint32"):
        cluster_signatures(-_random_sigs(5).astype(np.int64) - 1)
    # In-range integers of another dtype are the same signatures.
    sigs = _random_sigs(50)
    sigs[7] = sigs[3]
    a = cluster_signatures(sigs)
    b = cluster_signatures(sigs.astype(np.int64))
    assert np.array_equal(a.cluster_id, b.cluster_id) and a.n_removed == 1


@pytest.mark.parametrize("bad", ["0.8", True, None, [0.8], float("nan")])
def test_threshold_must_be_a_number(bad):
    """Was: dedup(threshold="0.8") was accepted (the string parsed)."""
    with pytest.raises(ConfigError, match="threshold"):
        dedup(["a b c"], threshold=bad)
    with pytest.raises(ConfigError, match="threshold"):
        LSHIndex(threshold=bad)
    with pytest.raises(ConfigError, match="threshold"):
        cluster_signatures(_random_sigs(2), threshold=bad)


@pytest.mark.parametrize("texts", [{"first text": 1, "second": 2}, {"a b", "c d"},
                                   frozenset({"x"})])
def test_unordered_texts_are_refused(texts):
    """Was: minhash(dict) hashed the keys (and a set in arbitrary order)."""
    with pytest.raises(TypeError, match="ordered collection"):
        minhash(texts)
    with pytest.raises(TypeError, match="ordered collection"):
        fs.gzip_ratio(texts)
    with pytest.raises((TypeError, ConfigError), match="ordered collection"):
        dedup(texts)


@pytest.mark.parametrize("params", [(2.5, 4), ("4", "8"), (True, 8), (4,), 12, (0, 8), (64, 64)])
def test_band_params_are_checked(params):
    with pytest.raises(ConfigError, match="params"):
        dedup(["a b c d e f"], params=params)
    with pytest.raises(ConfigError, match="params"):
        LSHIndex(params=params)


def test_weights_and_flags_are_checked():
    with pytest.raises(ConfigError, match="weights"):
        dedup(["a"], weights=("0.5", "0.5"))
    with pytest.raises(ConfigError, match="weights"):
        LSHIndex(weights=(float("nan"), 1.0))
    with pytest.raises(ConfigError, match="verify"):
        dedup(["a"], verify="no")
    with pytest.raises(ConfigError, match="memory_budget"):
        dedup(["a"], memory_budget=True)
    with pytest.raises(ConfigError, match="batch_size"):
        cluster_signatures(_random_sigs(2), batch_size=0)
    with pytest.raises(ConfigError, match="keys"):
        LSHIndex(num_perm=64).insert("ab", _random_sigs(2))


def test_scores_are_checked_before_the_work():
    texts = ["one two three four five six"] * 3
    with pytest.raises(ConfigError, match=r"scores must have shape \(3,\)"):
        dedup(texts, keep="score", scores=[1.0, 2.0])
    with pytest.raises(ConfigError, match="numbers"):
        dedup(texts, keep="score", scores=["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"scores must have shape \(4,\)"):
        cluster_signatures(_random_sigs(4), keep="score", scores=np.ones(3))
    # Streamed input: too few scores is named as soon as the documents outnumber them.
    with pytest.raises(ConfigError, match="scores has 2 values"):
        dedup(iter([texts]), keep="score", scores=[1.0, 2.0])
    # A score column that is not in the batches is named (was: a raw KeyError).
    import pyarrow as pa
    batch = pa.record_batch({"text": pa.array(texts), "quality": pa.array([1.0, 2.0, 3.0])})
    with pytest.raises(ConfigError, match="'qualty'.*quality"):
        dedup(iter([batch]), keep="score", scores="qualty")
    assert dedup(iter([batch]), keep="score", scores="quality").keep.tolist() == [False, False, True]


# ---------------------------------------------------------------- spill files

def test_unfinished_or_truncated_spill_file_is_refused(tmp_path):
    """Was: a SIGS file whose writer was killed read back as a valid empty file (the count
    was written only on close, and the size never checked)."""
    params = SpillParams(num_perm=64, seed=1)
    sigs = _random_sigs(100)
    path = tmp_path / "sigs.fsdd"
    write_signatures(path, sigs, params)
    assert np.array_equal(read_signatures(path, params), sigs)
    assert [p.name for p in tmp_path.iterdir()] == ["sigs.fsdd"]  # no temp file left
    # A writer stopped before close: its file (as the old in-place writer left it).
    w = SpillWriter(tmp_path / "killed.fsdd", b"SIGS", params)
    w.append(sigs, 100)
    w._f.flush()
    shutil.copy(w.tmp, tmp_path / "killed.fsdd")
    w.discard()
    assert not w.tmp.exists()
    with pytest.raises(InputError, match=r"killed\.fsdd: .*never finished"):
        read_signatures(tmp_path / "killed.fsdd", params)
    # A finished file cut short, or padded: the size disagrees with the header.
    data = path.read_bytes()
    for name, blob in (("cut.fsdd", data[:HEADER.size + 4 * 64 * 37 + 5]),
                       ("cut2.fsdd", data[:HEADER.size + 4 * 64 * 37]),
                       ("padded.fsdd", data + b"\0" * 256)):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(InputError, match=rf"{name}: .*header describes"):
            read_signatures(tmp_path / name, params)


def test_sets_file_size_is_checked(tmp_path):
    from fastsynth.dedup.store import BandStore
    params = SpillParams(num_perm=64, seed=1, bands=4, rows=16)
    store = BandStore(params, verify=True, spill_dir=tmp_path)
    values = np.arange(10, dtype=np.uint64)
    store.add(np.arange(2), np.zeros((2, 4), np.uint64), (values, np.array([0, 4, 10])))
    store.finish()
    v, o = read_sets(tmp_path / "sets.fsdd", params)
    assert v.tolist() == list(range(10)) and o.tolist() == [0, 4, 10]
    blob = (tmp_path / "sets.fsdd").read_bytes()
    (tmp_path / "sets.fsdd").write_bytes(blob[:-8])
    with pytest.raises(InputError, match="header describes"):
        read_sets(tmp_path / "sets.fsdd", params)


def test_spill_folder_removed_on_return_and_on_error(tmp_path):
    texts = [f"document {i} with a few distinct words {i * 7}" for i in range(300)]
    work = tmp_path / "work"
    res = dedup(texts, memory_budget=4096, workdir=work, batch_size=64)
    assert res.stats["spill_partitions"] >= res.bands and list(work.iterdir()) == []

    def failing():
        yield texts[:100]
        raise RuntimeError("source failed mid-way")
    with pytest.raises(RuntimeError, match="mid-way"):
        dedup(failing(), memory_budget=4096, workdir=work)
    assert list(work.iterdir()) == []


def test_spill_folder_of_a_killed_run_is_swept_by_the_next(tmp_path):
    """Was: a killed run left /tmp/fastsynth-dedup-* (or --workdir/sets.fsdd) forever."""
    work = tmp_path / "work"
    code = textwrap.dedent(f"""
        from fastsynth.dedup import dedup
        def batches():
            for b in range(10_000):
                if b == 3:
                    print("spilling", flush=True)
                yield [f"doc {{b}} {{i}} some words here and there {{i * b}}" for i in range(200)]
        dedup(batches(), memory_budget=1 << 16, workdir={str(work)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "spilling"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(work.iterdir())
    assert [p.name.startswith(f"fastsynth-dedup-{proc.pid}-") for p in left] == [True]
    assert any(left[0].iterdir())  # it held spill files
    # A folder of a live process (this one) is not touched.
    live = work / f"fastsynth-dedup-{os.getppid()}-keep"
    live.mkdir()
    dedup(["a b c d e f g", "a b c d e f g"], memory_budget=4096, workdir=work)
    assert [p.name for p in work.iterdir()] == [live.name]


def test_native_union_find_entry_points_check_their_arrays():
    """resolve_roots read parent[parent[i]] unchecked (out of bounds for a bad entry) and a
    negative max_all turned every bucket into all pairs."""
    from fastsynth import _native
    for bad in ([0, 5, 1], [-1], [1, 0]):
        with pytest.raises(ValueError, match="union-find"):
            _native.resolve_roots(np.array(bad, dtype=np.int64))
    with pytest.raises(ValueError, match="max_all"):
        _native.bucket_pairs(np.zeros(3, np.uint64), np.arange(3, dtype=np.int64), -1)
    parent = np.array([0, 0, 1, 3, 3], dtype=np.int64)
    _native.resolve_roots(parent)
    assert parent.tolist() == [0, 0, 0, 3, 3]


def test_old_layout_spill_files_in_a_workdir_are_removed(tmp_path):
    """Runs before per-run spill folders left sets.fsdd and bandNNN.fsdd in --workdir; the
    next spilling run removes BAND/SETS files of those names, and nothing else."""
    from fastsynth.dedup.store import BandStore
    params = SpillParams(num_perm=64, seed=1, bands=2, rows=8)
    store = BandStore(params, verify=True, spill_dir=tmp_path)  # the old layout, in place
    store.add(np.arange(2), np.zeros((2, 2), np.uint64), (np.arange(3, dtype=np.uint64),
                                                          np.array([0, 1, 3])))
    store.finish()
    write_signatures(tmp_path / "band123.fsdd", _random_sigs(2), params)  # a user's SIGS file
    (tmp_path / "notes.txt").write_text("keep")
    assert {p.name for p in tmp_path.iterdir()} >= {"band000.fsdd", "band001.fsdd", "sets.fsdd"}
    dedup(["a b c d e f g"] * 2, memory_budget=4096, workdir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["band123.fsdd", "notes.txt"]


def test_disk_full_while_spilling_leaves_nothing_behind(tmp_path):
    """A spilling dedup that runs out of space (RLIMIT_FSIZE -> EFBIG) raises OSError and
    removes its spill folder."""
    import resource
    work = tmp_path / "work"
    code = textwrap.dedent(f"""
        from fastsynth.dedup import dedup
        texts = [f"doc {{i}} some words here and there {{i * 7}} more words" for i in range(20000)]
        try:
            dedup(texts, memory_budget=1 << 16, workdir={str(work)!r})
            print("no error")
        except OSError as e:
            print("OSError", e.errno)
    """)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, preexec_fn=limit)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "OSError 27", res.stdout + res.stderr  # EFBIG
    assert list(work.iterdir()) == []
