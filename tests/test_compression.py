"""fastsynth.quality.gzip_ratio: bit-identical to Python's zlib, every input form."""
import os
import subprocess
import sys
import zlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastsynth as fs
from fastsynth.errors import ConfigError
from fastsynth.quality import libdeflate_available, zlib_version

SAME_ZLIB = zlib_version() == zlib.ZLIB_RUNTIME_VERSION


def python_ratio(text, level=6):
    b = text.encode("utf-8") if isinstance(text, str) else text
    return len(zlib.compress(b, level)) / len(b) if b else float("nan")


def assert_identical(got, texts, level=6):
    want = np.array([python_ratio(t, level) for t in texts], dtype=np.float64)
    assert got.dtype == np.float64 and got.shape == (len(texts),)
    # Bit-identical: same float from the same two integers, NaN where empty.
    np.testing.assert_array_equal(got, want)


VARIED = [
    "a", "hello world", "The quick brown fox jumps over the lazy dog. " * 40,
    "日本語のテキストと中文文本。" * 30, "emoji 🙂🚀 and ZWJ 👩‍👩‍👧 " * 20, "\n\n\t  \n",
    "x" * 100_000, "".join(chr(32 + (i * 7919) % 90) for i in range(50_000)),
]


@pytest.mark.skipif(not SAME_ZLIB, reason="Python links another zlib release than fastsynth")
@pytest.mark.parametrize("level", [-1, 0, 1, 5, 6, 9])
def test_bit_identical_to_zlib_at_every_level(level):
    assert_identical(fs.gzip_ratio(VARIED, level=level), VARIED, level)


@pytest.mark.skipif(not SAME_ZLIB, reason="Python links another zlib release than fastsynth")
@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=3000), max_size=40), st.sampled_from([1, 6, 9]))
def test_bit_identical_property(texts, level):
    assert_identical(fs.gzip_ratio(texts, level=level, threads=2), texts, level)


def test_large_and_incompressible_inputs():
    rng = np.random.default_rng(0)
    random_bytes = rng.integers(0, 256, size=3_000_000, dtype=np.uint8).tobytes()
    texts = [random_bytes, b"ab" * 2_000_000]
    got = fs.gzip_ratio(texts)
    assert_identical(got, texts)
    assert got[0] > 1.0  # random data expands: header, stored blocks, Adler-32


def test_empty_text_is_nan():
    got = fs.gzip_ratio(["", b"", "x"])
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2] == python_ratio("x")


def test_threads_do_not_change_results():
    texts = VARIED * 30
    one = fs.gzip_ratio(texts, threads=1)
    np.testing.assert_array_equal(one, fs.gzip_ratio(texts, threads=2))
    np.testing.assert_array_equal(one, fs.gzip_ratio(texts, threads=7))


def test_arrow_inputs_match_lists():
    texts = VARIED + ["", "tail"]
    want = fs.gzip_ratio(texts)
    for arr in (pa.array(texts, pa.string()), pa.array(texts, pa.large_string()),
                pa.array([t.encode() for t in texts], pa.binary())):
        np.testing.assert_array_equal(fs.gzip_ratio(arr), want)
    sliced = pa.array(texts)[2:7]
    np.testing.assert_array_equal(fs.gzip_ratio(sliced), want[2:7])
    chunked = pa.chunked_array([texts[:3], texts[3:]])
    np.testing.assert_array_equal(fs.gzip_ratio(chunked), want)
    with_nulls = pa.array(["abc abc abc", None, "def"])
    got = fs.gzip_ratio(with_nulls)
    assert np.isnan(got[1]) and got[0] == python_ratio("abc abc abc")


def test_empty_collections():
    assert fs.gzip_ratio([]).shape == (0,)
    assert fs.gzip_ratio(pa.array([], pa.string())).shape == (0,)
    assert fs.gzip_ratio(pa.chunked_array([], pa.string())).shape == (0,)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ConfigError, match="level"):
        fs.gzip_ratio(["x"], level=10)
    with pytest.raises(ConfigError, match="level"):
        fs.gzip_ratio(["x"], level=13, backend="libdeflate")
    with pytest.raises(ConfigError, match="backend"):
        fs.gzip_ratio(["x"], backend="brotli")
    with pytest.raises(ConfigError, match="threads"):
        fs.gzip_ratio(["x"], threads=-1)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        fs.gzip_ratio(["x", 3])
    with pytest.raises(TypeError, match="single str"):
        fs.gzip_ratio("not a list")
    with pytest.raises(ValueError, match=r"texts\[0\].*surrogate"):
        fs.gzip_ratio(["\ud800"])
    with pytest.raises(TypeError, match="int64"):
        fs.gzip_ratio(pa.array([1, 2]))


@pytest.mark.skipif(not libdeflate_available(), reason="libdeflate is not installed here")
def test_libdeflate_backend_is_close_to_zlib_not_identical_by_contract():
    texts = VARIED * 5
    fast = fs.gzip_ratio(texts, backend="libdeflate")
    ref = fs.gzip_ratio(texts)
    assert np.all(np.isfinite(fast))
    # Same format and level: on texts of a few KB and more the ratios agree closely;
    # tiny texts differ in relative terms (a few bytes of block overhead).
    long = np.array([len(t.encode()) >= 1000 for t in texts])
    np.testing.assert_allclose(fast[long], ref[long], rtol=0.15)
    assert not np.array_equal(fast, ref)  # not identical: the documented contract
    np.testing.assert_array_equal(fast, fs.gzip_ratio(texts, backend="libdeflate", threads=1))


def test_missing_libdeflate_gives_a_clear_error():
    code = ("import fastsynth as fs\n"
            "try:\n    fs.gzip_ratio(['x'], backend='libdeflate')\n"
            "except RuntimeError as e:\n    print('ERR', e)\n")
    env = dict(os.environ, FASTSYNTH_LIBDEFLATE="/nonexistent/libdeflate.so")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "ERR libdeflate not found" in out.stdout and "FASTSYNTH_LIBDEFLATE" in out.stdout
    # The zlib path is unaffected by a missing libdeflate.
    code2 = "import fastsynth as fs; print(fs.gzip_ratio(['abcabc'])[0])"
    out2 = subprocess.run([sys.executable, "-c", code2], env=env, capture_output=True, text=True, check=True)
    assert float(out2.stdout) == python_ratio("abcabc")
