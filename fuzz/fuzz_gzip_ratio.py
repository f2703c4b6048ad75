"""Fuzz target: ``fastsynth.gzip_ratio`` and the native Arrow view it reads.

Input: a level, a thread count, a container (list, tuple, Arrow array possibly sliced and
with nulls, or a raw ``_native.ArrowTexts`` built from fuzzed offsets) and up to 6 texts
(str — including lone surrogates — or bytes).

Failure (a :class:`Finding`, or any exception escaping ``check``):

* a value differs from ``len(zlib.compress(b, level)) / len(b)`` computed by Python's
  zlib (bit-identical is the documented contract; empty texts and nulls must be NaN);
* libdeflate (when loadable): a value that is not ``compressed_bytes / len(b)`` for a
  whole positive number of compressed bytes;
* an error other than ``ValueError`` (lone surrogate, bad offsets: must name the item)
  or ``ConfigError``; an accepted call whose inputs were invalid; a crash or sanitizer
  report inside the native code.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pyarrow as pa

from bytesource import ByteSource
from harness import Finding, instrumented, main
from shared_checks import call_refusing_lone_surrogates, has_lone_surrogate

with instrumented():
    import fastsynth as fs
    import fastsynth._texts
    import fastsynth.quality.compression  # noqa: F401
    from fastsynth import _native

KNOWN: dict[str, str] = {}
SAME_ZLIB = _native.zlib_version == zlib.ZLIB_RUNTIME_VERSION


def _expected(b: bytes | None, level: int) -> float:
    if not b:
        return math.nan
    return len(zlib.compress(b, level)) / len(b)


def _same(got: float, want: float) -> bool:
    return (math.isnan(got) and math.isnan(want)) or got == want


def _check_raw_view(src: ByteSource, level: int) -> None:
    """``_native.ArrowTexts`` with arbitrary offsets: refused with ValueError when they
    leave the data buffer or go backwards, else each slice is measured correctly."""
    data = src.bytes(256)
    n = src.int(0, 6)
    offsets = np.array([src.int(-4, 300) for _ in range(n + 1)], dtype=np.int64)
    valid = None
    if src.bool():
        valid = np.array([src.int(0, 1) for _ in range(src.int(0, n + 1))], dtype=np.uint8)
    view = _native.ArrowTexts(memoryview(data), offsets, valid)
    bad = (len(offsets) < 1 or any(b < 0 or e < b or e > len(data)
                                   for b, e in zip(offsets[:-1], offsets[1:]))
           or (valid is not None and len(valid) != n))
    try:
        got = _native.gzip_ratio(view, level, 1, "zlib")
    except ValueError as e:
        if not bad:
            raise Finding("refused_valid_view", f"valid offsets {offsets.tolist()} refused: {e}")
        return
    if bad:
        raise Finding("accepted_bad_view", f"offsets {offsets.tolist()} (data {len(data)} B, "
                      f"mask {None if valid is None else len(valid)}) accepted")
    for i in range(n):
        want = math.nan if valid is not None and not valid[i] else \
            _expected(data[offsets[i]:offsets[i + 1]], level)
        if not _same(got[i], want):
            raise Finding("wrong_ratio", f"raw view item {i}: {got[i]!r} != {want!r}")


def check(data: bytes) -> None:
    src = ByteSource(data)
    level = src.int(-1, 9)
    threads = src.int(1, 3)
    form = src.choice(["list", "tuple", "arrow", "raw_view", "libdeflate"])
    if form == "raw_view":
        _check_raw_view(src, level)
        return
    texts = [src.text_or_bytes(200) for _ in range(src.int(0, 6))]
    if form == "libdeflate":
        ok, _ = _native.libdeflate_status()
        lvl = src.int(0, 12)
        if not ok or any(has_lone_surrogate(t) for t in texts):
            return
        got = fs.gzip_ratio(texts, level=lvl, threads=threads, backend="libdeflate")
        for t, g in zip(texts, got):
            b = t if isinstance(t, bytes) else t.encode("utf-8")
            size = g * len(b) if b else math.nan
            if b and not (size >= 1 and abs(size - round(size)) < 1e-6 * size):
                raise Finding("wrong_ratio", f"libdeflate ratio {g!r} is not k/{len(b)}")
            if not b and not math.isnan(g):
                raise Finding("wrong_ratio", f"empty text gave {g!r}, not NaN")
        return
    arg: object = texts if form == "list" else tuple(texts)
    if form == "arrow":
        if any(has_lone_surrogate(t) for t in texts):
            return  # pyarrow itself refuses lone surrogates
        items = [None if src.int(0, 4) == 0 else t for t in texts]
        kind = pa.binary() if any(isinstance(t, bytes) for t in items) else src.choice(
            [pa.string(), pa.large_string()])
        arr = pa.array([t.encode("utf-8") if isinstance(t, str) and kind == pa.binary() else t
                        for t in items], kind)
        start = src.int(0, len(items))
        arr = arr.slice(start, src.int(0, len(items) - start))
        texts = arr.to_pylist()
        arg = arr
    got = call_refusing_lone_surrogates(
        lambda: fs.gzip_ratio(arg, level=level, threads=threads), texts)
    if got is None:
        return
    if got.dtype != np.float64 or got.shape != (len(texts),):
        raise Finding("wrong_shape", f"{got.dtype} {got.shape} for {len(texts)} texts")
    if not SAME_ZLIB:
        return  # a different zlib release may compress differently: nothing to compare
    for i, t in enumerate(texts):
        b = t.encode("utf-8") if isinstance(t, str) else t
        want = _expected(b, level)
        if not _same(got[i], want):
            raise Finding("wrong_ratio", f"texts[{i}] level {level}: {got[i]!r} != zlib {want!r}")


if __name__ == "__main__":
    main(check, KNOWN)
