"""Fuzz target: ``fastsynth.quality.heuristics`` (the native Gopher heuristics).

Input: a thread count, a container (list, or an Arrow array with nulls) and up to 5 texts
(str — including lone surrogates — or bytes, which may be invalid UTF-8).

Failure (a :class:`Finding`, or any exception escaping ``check``):

* any value differs (rtol 1e-12, NaN = NaN) from :mod:`fastsynth.quality._reference`,
  the executable specification, on the same text (bytes decoded with one U+FFFD per
  invalid byte, as documented; Arrow nulls all NaN);
* results depend on the thread count or on the container;
* an error other than ``ValueError`` naming the item for a lone surrogate; a crash or
  sanitizer report in the native code.
"""
from __future__ import annotations

import codecs
import math

import numpy as np
import pyarrow as pa

from bytesource import ByteSource
from harness import Finding, instrumented, main
from shared_checks import call_refusing_lone_surrogates

with instrumented():
    import fastsynth as fs
    import fastsynth._texts
    import fastsynth.quality.heuristics  # noqa: F401

# The reference stays uninstrumented: its coverage says nothing about the code under test
# and instrumenting it made each execution ~10x slower.
from fastsynth.quality import _reference as ref  # noqa: E402

KNOWN: dict[str, str] = {}


def _per_byte(err: UnicodeDecodeError) -> tuple[str, int]:
    # The documented rule: one U+FFFD for every byte that is not part of valid UTF-8.
    return "\ufffd" * (err.end - err.start), err.end


codecs.register_error("fastsynth_fuzz_per_byte", _per_byte)


def _as_text(t: str | bytes) -> str:
    return t if isinstance(t, str) else t.decode("utf-8", "fastsynth_fuzz_per_byte")


def check(data: bytes) -> None:
    src = ByteSource(data)
    threads = src.int(1, 3)
    texts = [src.text_or_bytes(300) for _ in range(src.int(0, 5))]
    names = fs.quality.HEURISTIC_NAMES
    got = call_refusing_lone_surrogates(lambda: fs.quality.heuristics(texts, threads=threads),
                                        texts)
    if got is None:
        return
    if list(got) != list(names):
        raise Finding("wrong_names", f"{list(got)}")
    want = ref.heuristics([_as_text(t) for t in texts])
    for name in names:
        col = got[name]
        if col.dtype != np.float64 or col.shape != (len(texts),):
            raise Finding("wrong_shape", f"{name}: {col.dtype} {col.shape}")
        exp = np.array(want.get(name, []), dtype=np.float64)
        if not np.allclose(col, exp, rtol=1e-12, atol=0, equal_nan=True):
            i = int(np.flatnonzero(~np.isclose(col, exp, rtol=1e-12, atol=0, equal_nan=True))[0])
            raise Finding("differs_from_reference",
                          f"{name} of texts[{i}]={texts[i]!r}: native {col[i]!r}, reference {exp[i]!r}")
    # The same texts with other threads, and as an Arrow array with nulls in between.
    other = fs.quality.heuristics(texts, threads=1 + threads % 3)
    if any(not np.array_equal(other[k], got[k], equal_nan=True) for k in names):
        raise Finding("thread_dependent", "results change with the thread count")
    if texts:
        nulls = [src.bool() for _ in texts]
        items = [None if z else (t.encode("utf-8") if isinstance(t, str) else t)
                 for t, z in zip(texts, nulls)]
        arr = fs.quality.heuristics(pa.array(items, pa.binary()), threads=threads)
        for k in names:
            exp = np.where(nulls, math.nan, got[k])
            if not np.array_equal(arr[k], exp, equal_nan=True):
                raise Finding("container_dependent", f"{k}: Arrow {arr[k]} != list {exp}")


if __name__ == "__main__":
    main(check, KNOWN)
