"""LSH parameters, the streaming index, band keys and the spill file format."""
from __future__ import annotations

import numpy as np
import pytest

from fastsynth.dedup import LSHIndex, band_keys, minhash, optimal_params
from fastsynth.dedup.spill import SpillParams, read_signatures, write_signatures
from fastsynth.dedup.synthetic import make_near_duplicates
from fastsynth.errors import InputError

datasketch = pytest.importorskip("datasketch")
from datasketch.lsh import _optimal_param  # noqa: E402


@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_optimal_params_equal_datasketch_over_grid(num_perm):
    for t in np.round(np.arange(0.5, 0.951, 0.05), 2):
        assert optimal_params(float(t), num_perm) == _optimal_param(float(t), num_perm, 0.5, 0.5), t


def test_optimal_params_other_weights_and_design_values():
    for w in [(0.3, 0.7), (0.05, 0.95), (0.9, 0.1)]:
        assert optimal_params(0.8, 128, w) == _optimal_param(0.8, 128, *w)
    expected = {0.5: (25, 5), 0.7: (14, 9), 0.8: (9, 13), 0.85: (8, 16), 0.9: (5, 25)}
    for t, br in expected.items():
        assert optimal_params(t, 128) == br
    assert optimal_params(0.8, 256) == (17, 15)


@pytest.mark.parametrize("args,name", [((0.0, 128), "threshold"), ((1.5, 128), "threshold"),
                                       ((0.8, 0), "num_perm"), ((0.8, 128, (0.7, 0.7)), "weights")])
def test_optimal_params_bad_input(args, name):
    with pytest.raises(ValueError, match=name):
        optimal_params(*args)


def _datasketch_candidates(sigs, threshold, num_perm):
    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=num_perm)
    mhs = [datasketch.MinHash(num_perm, hashvalues=s, scheme="affine32") for s in sigs]
    for i, m in enumerate(mhs):
        lsh.insert(i, m)
    return [sorted(lsh.query(m)) for m in mhs]


def test_index_query_equals_datasketch_lsh():
    data = make_near_duplicates(120, seed=2)
    sigs = minhash(data.texts, compat="datasketch")
    index = LSHIndex(threshold=0.8, num_perm=128)
    # streaming: insert in three pieces
    n = len(data.texts)
    for lo, hi in [(0, 100), (100, 250), (250, n)]:
        index.insert(list(range(lo, hi)), sigs[lo:hi])
    ours = index.query(sigs)
    assert ours == _datasketch_candidates(sigs, 0.8, 128)
    assert sum(len(c) > 1 for c in ours) > 50  # the near-duplicates were found


def test_index_empty_signatures_never_match_and_keys_checked():
    sigs = minhash(["", "  ", "a b c d e f"], num_perm=64)
    index = LSHIndex(0.5, 64)
    index.insert(["e1", "e2", "doc"], sigs)
    assert index.query(sigs) == [[], [], ["doc"]]
    assert len(index) == 3 and "e1" in index
    with pytest.raises(ValueError, match="already"):
        index.insert(["doc"], sigs[2:])
    with pytest.raises(ValueError, match="shape"):
        index.query(np.zeros((1, 32), np.uint32))


def test_band_keys_depend_only_on_their_band():
    sigs = minhash([f"text number {i} with some shared words here" for i in range(50)], num_perm=128)
    keys = band_keys(sigs, 9, 13)
    assert keys.shape == (50, 9) and keys.dtype == np.uint64
    changed = sigs.copy()
    changed[:, 13 * 4] ^= 1  # touch band 4 only
    k2 = band_keys(changed, 9, 13)
    assert (k2[:, 4] != keys[:, 4]).all()
    assert np.array_equal(np.delete(k2, 4, axis=1), np.delete(keys, 4, axis=1))


def test_spill_signature_file_roundtrip_and_refusals(tmp_path):
    sigs = minhash(["alpha beta gamma delta", "one two three"], num_perm=32, seed=3)
    p = SpillParams(num_perm=32, seed=3)
    path = tmp_path / "sigs.fsdd"
    write_signatures(path, sigs, p)
    assert np.array_equal(read_signatures(path, p), sigs)
    with pytest.raises(InputError, match="seed=3 but seed=4"):
        read_signatures(path, SpillParams(num_perm=32, seed=4))
    with pytest.raises(InputError, match="num_perm"):
        read_signatures(path, SpillParams(num_perm=64, seed=3))
    with pytest.raises(InputError, match="scheme"):
        read_signatures(path, SpillParams(num_perm=32, seed=3, scheme="datasketch"))
    raw = bytearray(path.read_bytes())
    raw[8] = 1  # format version 1 (an older hash of word shingles)
    (tmp_path / "v2.fsdd").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="version 1 is not supported"):
        read_signatures(tmp_path / "v2.fsdd", p)
    (tmp_path / "junk.fsdd").write_bytes(b"not a spill file at all" * 4)
    with pytest.raises(InputError, match="magic"):
        read_signatures(tmp_path / "junk.fsdd", p)
