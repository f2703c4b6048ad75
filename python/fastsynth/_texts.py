"""Hand text collections to the native module without per-document Python work.

Accepted everywhere a hot path takes ``texts``: a list or tuple of ``str``/``bytes``,
a ``pyarrow`` string/large_string/binary array, or a ``pyarrow.ChunkedArray`` of those.
Arrow arrays are passed as views of their buffers (zero copy of the text).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Set
from typing import Any

import numpy as np

import fastsynth._native as _native

try:  # pyarrow is a core dependency, but keep the import failure explicit
    import pyarrow as pa
except ImportError:  # pragma: no cover
    pa = None


def native_chunks(texts: Any) -> Iterator[Any]:
    """Yield objects the native functions accept (lists, or ``_native.ArrowTexts``)."""
    if pa is not None and isinstance(texts, pa.ChunkedArray):
        for chunk in texts.chunks:
            yield _arrow_view(chunk)
        return
    if pa is not None and isinstance(texts, pa.Array):
        yield _arrow_view(texts)
        return
    if isinstance(texts, (list, tuple)):
        yield texts
        return
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a collection of texts, not a single str/bytes: wrap it in a list")
    if isinstance(texts, (Mapping, Set)):
        # Iterating a dict gives its keys and a set has no order: row i of the result
        # would not belong to any input the caller can name.
        raise TypeError(f"texts must be an ordered collection (list, tuple, array, iterable "
                        f"of str/bytes), got {type(texts).__name__}")
    if isinstance(texts, np.ndarray):
        yield texts.tolist()
        return
    # Any other iterable (generator, pandas Series, ...) is materialised once.
    try:
        yield list(texts)
    except TypeError:
        raise TypeError(
            f"texts must be a list of str/bytes or a pyarrow string array, got {type(texts).__name__}"
        ) from None


def _arrow_view(arr: "pa.Array") -> "_native.ArrowTexts":
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_binary(t):
        off_dtype = np.int32
    elif pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        off_dtype = np.int64
    elif pa.types.is_null(t):
        arr = pa.array([None] * len(arr), type=pa.string())
        off_dtype = np.int32
    else:
        raise TypeError(f"texts: pyarrow array of type {t} is not a string or binary array")
    _, offsets_buf, data_buf = arr.buffers()
    n = len(arr)
    if offsets_buf is None:
        offsets = np.zeros(n + 1, dtype=np.int64)
    else:
        offsets = np.frombuffer(offsets_buf, dtype=off_dtype)[arr.offset: arr.offset + n + 1].astype(np.int64)
    data = data_buf if data_buf is not None else b""
    valid = None
    if arr.null_count:
        valid = np.asarray(arr.is_valid(), dtype=np.uint8)
    return _native.ArrowTexts(memoryview(data), offsets, valid)


#: Most threads a caller may ask for: far past any core count, below the native int
#: argument's range (2**40 used to fail inside the bindings with an unreadable TypeError).
MAX_THREADS = 4096


def resolve_threads(threads: int | None) -> int:
    """``None`` or 0 means all cores; otherwise a positive thread count (<= MAX_THREADS)."""
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) \
            or not 0 <= threads <= MAX_THREADS:
        from fastsynth.errors import ConfigError

        raise ConfigError(f"threads must be None or an int in [0, {MAX_THREADS}], got {threads!r}")
    return int(threads)
