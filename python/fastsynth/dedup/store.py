"""Where dedup keeps band entries and shingle sets: in memory, or in spill files.

Band entries are (band key, document id) records, one per document per band; shingle
sets are CSR arrays of hash64 values. In spill mode both are appended to files of the
format in fastsynth.dedup.spill, and each band is later read back in key-range
partitions small enough for the memory budget (a bucket never straddles partitions,
because partitions are ranges of the key's top bits).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fastsynth.dedup.spill import BAND_DTYPE, SpillParams, SpillWriter, read_bands, read_sets


class BandStore:
    """Band entries per band, and shingle sets: in memory, or spilled to workdir."""

    def __init__(self, params: SpillParams, verify: bool, spill_dir: Path | None):
        self.params, self.verify, self.dir = params, verify, spill_dir
        self.bands: list[list[np.ndarray]] = [[] for _ in range(params.bands)]
        self.sets_values: list[np.ndarray] = []
        self.sets_offsets = [np.zeros(1, dtype=np.int64)]
        self.n_values = 0
        self.partitions = 0  # band partitions processed from disk
        if spill_dir is not None:
            self.band_writers = [SpillWriter(spill_dir / f"band{j:03d}.fsdd", b"BAND", params, j)
                                 for j in range(params.bands)]
            self.sets_writer = SpillWriter(spill_dir / "sets.fsdd", b"SETS", params) if verify else None

    def add(self, ids: np.ndarray, keys: np.ndarray, sets: tuple[np.ndarray, np.ndarray] | None) -> None:
        for j in range(self.params.bands):
            rec = np.empty(ids.size, dtype=BAND_DTYPE)
            rec["key"], rec["id"] = keys[:, j], ids
            if self.dir is None:
                self.bands[j].append(rec)
            else:
                self.band_writers[j].append(rec, rec.size)
        if sets is not None:
            values, offsets = sets
            self.sets_offsets.append(offsets[1:] + self.n_values)
            self.n_values += values.size
            if self.dir is None:
                self.sets_values.append(values)
            else:
                self.sets_writer.append(values, offsets.size - 1)

    def finish(self) -> None:
        if self.dir is None:
            return
        for w in self.band_writers:
            w.close()
        if self.sets_writer is not None:
            offsets = np.concatenate(self.sets_offsets)
            self.sets_writer.append(offsets, 0)
            self.sets_writer.extra = self.n_values
            self.sets_writer.close()
            self.sets_offsets = []

    def sets(self) -> tuple[np.ndarray, np.ndarray]:
        if self.dir is None:
            values = np.concatenate(self.sets_values) if self.sets_values else np.empty(0, np.uint64)
            return values, np.concatenate(self.sets_offsets)
        return read_sets(self.dir / "sets.fsdd", self.params)

    def band_parts(self, j: int, budget: int | None) -> Iterator[np.ndarray]:
        """Band j's entries, in key-range partitions of roughly ``budget`` bytes."""
        if self.dir is None:
            yield np.concatenate(self.bands[j]) if self.bands[j] else np.empty(0, BAND_DTYPE)
            self.bands[j] = []
            return
        path = self.dir / f"band{j:03d}.fsdd"
        entries = read_bands(path, self.params)
        nbytes = entries.size * BAND_DTYPE.itemsize
        # Sorting needs the entries plus an index array: ~2x the bytes in memory.
        parts = 1
        while budget and parts < 4096 and 2 * nbytes / parts > budget:
            parts *= 2
        self.partitions += parts
        if parts == 1:
            yield np.array(entries)
        else:
            yield from self._partition(entries, parts, j)
        del entries
        path.unlink()

    def _partition(self, entries: np.ndarray, parts: int, j: int) -> Iterator[np.ndarray]:
        shift = np.uint64(64 - int(parts).bit_length() + 1)
        paths = [self.dir / f"band{j:03d}.part{p:04d}.fsdd" for p in range(parts)]
        writers = [SpillWriter(p, b"BAND", self.params, j) for p in paths]
        step = 1 << 16  # entries per read: 1 MiB chunks
        for s in range(0, entries.size, step):
            chunk = np.array(entries[s:s + step])
            which = (chunk["key"] >> shift).astype(np.int64)
            order = np.argsort(which, kind="stable")
            bounds = np.searchsorted(which[order], np.arange(parts + 1))
            for p in range(parts):
                if bounds[p + 1] > bounds[p]:
                    sel = chunk[order[bounds[p]:bounds[p + 1]]]
                    writers[p].append(sel, sel.size)
        for w in writers:
            w.close()
        for p in paths:
            yield np.array(read_bands(p, self.params))
            p.unlink()
