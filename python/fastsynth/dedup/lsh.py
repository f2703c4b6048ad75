"""Streaming LSH index over MinHash signatures (band keys in per-band hash tables).

A signature is cut into ``bands`` bands of ``rows`` values; each band's values are
hashed (hash64 of their little-endian bytes) to a 64-bit band key. Two signatures are
candidates when any band key is equal. Empty signatures (documents without shingles)
are never indexed and never returned.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from fastsynth import _native
from fastsynth.dedup.minhash import check_num_perm, is_empty
from fastsynth.dedup.params import check_bands_rows, check_threshold, optimal_params
from fastsynth.errors import ConfigError


def band_keys(sigs: np.ndarray, bands: int, rows: int, threads: int = 0) -> np.ndarray:
    """uint64 ``(n, bands)`` band keys of uint32 signatures ``(n, num_perm)``."""
    return _native.band_keys(np.ascontiguousarray(sigs, dtype=np.uint32), bands, rows, threads)


def check_sigs(sigs: Any, num_perm: int, *, allow_1d: bool = True) -> np.ndarray:
    """``sigs`` as a C-contiguous uint32 ``(n, num_perm)`` array; other integer dtypes
    are accepted when every value fits in uint32. Floats, bools and objects are refused
    (a cast would turn them into wrong signatures, e.g. all zeros)."""
    try:
        arr = np.asarray(sigs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sigs must be a uint32 array (n, {num_perm}): {e}") from None
    if arr.ndim == 1 and allow_1d:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != num_perm:
        raise ConfigError(f"sigs must have shape (n, {num_perm}), got {arr.shape}")
    if arr.dtype != np.uint32:
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() > 0xFFFFFFFF)):
            raise ConfigError(f"sigs must be uint32 MinHash values, got dtype {arr.dtype}")
        arr = arr.astype(np.uint32)
    return np.ascontiguousarray(arr)


class LSHIndex:
    """MinHash LSH with streaming ``insert`` and ``query``.

    ``threshold`` and ``num_perm`` choose ``(bands, rows)`` via :func:`optimal_params`
    (or pass ``params=(bands, rows)``). Keys are any hashable values, unique per index.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, weights: tuple[float, float] = (0.5, 0.5),
                 params: tuple[int, int] | None = None):
        self.num_perm = check_num_perm(num_perm)
        self.threshold = check_threshold(threshold)
        if params is None:
            self.bands, self.rows = optimal_params(self.threshold, num_perm, weights)
        else:
            self.bands, self.rows = check_bands_rows(params, self.num_perm)
        self._tables: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]
        self._keys: list[Hashable] = []
        self._index: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._index

    def insert(self, keys: Sequence[Hashable], sigs: Any) -> None:
        """Index ``sigs`` (uint32 ``(n, num_perm)``) under ``keys`` (n unique, new keys)."""
        sigs = check_sigs(sigs, self.num_perm)
        if isinstance(keys, (str, bytes)):
            raise ConfigError("keys must be a sequence of keys, not one str: wrap it in a list")
        keys = list(keys)
        if len(keys) != sigs.shape[0]:
            raise ConfigError(f"keys has {len(keys)} entries but sigs has {sigs.shape[0]} rows")
        for k in keys:
            if k in self._index:
                raise ConfigError(f"key {k!r} is already in the index")
        if len(set(keys)) != len(keys):
            raise ConfigError("keys must be unique")
        bk = band_keys(sigs, self.bands, self.rows)
        empty = is_empty(sigs)
        for i, key in enumerate(keys):
            idx = len(self._keys)
            self._keys.append(key)
            self._index[key] = idx
            if empty[i]:
                continue
            for table, h in zip(self._tables, bk[i].tolist()):
                table.setdefault(h, []).append(idx)

    def query(self, sigs: Any) -> list[list[Hashable]]:
        """For each signature row, the keys sharing at least one band, in insertion order."""
        sigs = check_sigs(sigs, self.num_perm)
        bk = band_keys(sigs, self.bands, self.rows)
        empty = is_empty(sigs)
        out = []
        for i in range(sigs.shape[0]):
            if empty[i]:
                out.append([])
                continue
            hits: set[int] = set()
            for table, h in zip(self._tables, bk[i].tolist()):
                bucket = table.get(h)
                if bucket:
                    hits.update(bucket)
            out.append([self._keys[j] for j in sorted(hits)])
        return out
