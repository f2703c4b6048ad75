"""gzip compression ratio, computed natively over many texts at once.

Convention (used everywhere fastsynth prints a ratio): **compressed / original** size
of the text's UTF-8 bytes, zlib container, so *lower means more compressible*
(repetitive boilerplate ~0.1, English prose ~0.35-0.45, random bytes > 1).
Pandey (2024) gzips token ids and takes a median over rows; Shaib et al. and the
Entropy-Law paper report the inverse (original / compressed).
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np

import fastsynth._native as _native
from fastsynth._texts import native_chunks, resolve_threads
from fastsynth.errors import ConfigError

Backend = Literal["zlib", "libdeflate"]


def gzip_ratio(texts: Any, level: int = 6, threads: int | None = None,
               backend: Backend = "zlib") -> np.ndarray:
    """Compressed-over-original size of each text's UTF-8 bytes.

    Args:
        texts: list/tuple of ``str`` or ``bytes``, or a pyarrow string/binary array
            (``Array`` or ``ChunkedArray``; read in place, no copy).
        level: compression level; zlib accepts -1 (= 6) to 9, libdeflate 0 to 12.
        threads: worker threads; ``None`` or 0 = all cores. The GIL is released.
        backend: ``"zlib"`` (default) is **bit-identical** to
            ``len(zlib.compress(b, level)) / len(b)`` in Python when both link the
            same zlib release (``fastsynth.quality.zlib_version()``; checked by the
            tests). ``"libdeflate"`` is ~2-3x faster but its compressed sizes differ
            from zlib's (usually a little smaller); it is loaded at run time and
            raises if absent.

    Returns:
        ``float64`` array, one value per text. The empty text has no defined ratio
        (zlib still emits 8 bytes) and gets ``NaN``, as do null entries of an Arrow
        array.
    """
    check_gzip_settings(level, backend)
    n_threads = resolve_threads(threads)
    parts = [_native.gzip_ratio(chunk, int(level), n_threads, backend) for chunk in native_chunks(texts)]
    if not parts:
        return np.empty(0, dtype=np.float64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def check_gzip_settings(level: int, backend: str) -> None:
    """Raise ConfigError unless ``level`` and ``backend`` are valid for gzip_ratio (lets a
    job fail before it reads any input)."""
    if backend not in ("zlib", "libdeflate"):
        raise ConfigError(f"backend must be 'zlib' or 'libdeflate', got {backend!r}")
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise ConfigError(f"level must be an int, got {level!r}")
    lo, hi = (-1, 9) if backend == "zlib" else (0, 12)
    if not lo <= level <= hi:
        raise ConfigError(f"level must be in [{lo}, {hi}] for the {backend} backend, got {level}")


def zlib_version() -> str:
    """The zlib release linked into fastsynth's native module."""
    return _native.zlib_version


def libdeflate_available() -> bool:
    """Whether ``backend="libdeflate"`` works on this machine."""
    return bool(_native.libdeflate_status()[0])
