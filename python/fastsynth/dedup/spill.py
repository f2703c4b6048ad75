"""On-disk spill files for signatures, band keys and shingle sets (format version 2).

Every file starts with a 64-byte little-endian header, then a raw payload:

=======  =====  ==============================================================
offset   type   field
=======  =====  ==============================================================
0        4s     magic ``b"FSDD"``
4        4s     kind: ``b"SIGS"`` | ``b"BAND"`` | ``b"SETS"``
8        u32    format version (2; version 1 files hold fast-scheme values of an
                older word-shingle hash and are refused)
12       u32    num_perm
16       u64    seed
24       u32    scheme: 0 = fast, 1 = datasketch
28       u32    ngram
32       u32    shingle: 0 = word, 1 = char
36       u32    bands (0 where not applicable)
40       u32    rows per band (0 where not applicable)
44       u32    band index (BAND files) else 0
48       u64    count: rows (SIGS), entries (BAND), documents (SETS)
56       u64    SETS: number of values; else 0
=======  =====  ==============================================================

Payloads: SIGS — ``count x num_perm`` uint32, row-major. BAND — ``count`` records of
(uint64 key, int64 document id). SETS — the uint64 values (each document's sorted,
de-duplicated hash64 shingle set, concatenated) then ``count + 1`` int64 offsets. A reader states the parameters it
expects; a file of another version, seed, num_perm, scheme or shingling is refused.

Crash safety (docs/errors.md): a writer writes ``.<name>.tmp-<pid>`` beside the target
with ``count = 2**64 - 1`` ("unfinished") in its header, and only ``close()`` writes the
real counts and renames the file into place. A reader refuses an unfinished header and
any file whose size is not exactly the header plus the payload its counts describe, so a
file cut short (or padded) is never read as a smaller valid one.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastsynth.atomic import temp_path
from fastsynth.errors import ConfigError, InputError

MAGIC = b"FSDD"
VERSION = 2
HEADER = struct.Struct("<4s4sIIQIIIIIIQQ")
assert HEADER.size == 64
BAND_DTYPE = np.dtype([("key", "<u8"), ("id", "<i8")])
_SCHEMES = {"fast": 0, "datasketch": 1}
_SHINGLES = {"word": 0, "char": 1}
#: Header count of a file whose writer has not finished (never a real count).
UNFINISHED = 2**64 - 1


@dataclass(frozen=True)
class SpillParams:
    """What a spill file's contents depend on; all must match to reuse a file."""

    num_perm: int
    seed: int
    scheme: str = "fast"
    ngram: int = 5
    shingle: str = "word"
    bands: int = 0
    rows: int = 0


def _pack(kind: bytes, p: SpillParams, band: int, count: int, extra: int) -> bytes:
    return HEADER.pack(MAGIC, kind, VERSION, p.num_perm, p.seed, _SCHEMES[p.scheme], p.ngram,
                       _SHINGLES[p.shingle], p.bands, p.rows, band, count, extra)


class SpillWriter:
    """Appends arrays to one spill file; ``close()`` writes the header's counts and puts
    the file in place (until then it is a temporary sibling marked unfinished);
    ``discard()`` removes it instead."""

    def __init__(self, path: str | os.PathLike, kind: bytes, params: SpillParams, band: int = 0):
        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self.kind, self.params, self.band = kind, params, band
        self.count = 0
        self.extra = 0
        self._f = open(self.tmp, "wb")
        self._f.write(_pack(kind, params, band, UNFINISHED, 0))

    def append(self, arr: np.ndarray, count: int) -> None:
        self._f.write(np.ascontiguousarray(arr).tobytes())
        self.count += count

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.seek(0)
        self._f.write(_pack(self.kind, self.params, self.band, self.count, self.extra))
        self._f.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        """Close and delete the unfinished file (after an error)."""
        if not self._f.closed:
            self._f.close()
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass


def read_header(path: str | os.PathLike) -> dict:
    """The header fields of a spill file (raises InputError if it is not one)."""
    with open(path, "rb") as f:
        raw = f.read(HEADER.size)
    if len(raw) < HEADER.size or raw[:4] != MAGIC:
        raise InputError("not a fastsynth dedup spill file (bad magic)", source=str(path))
    (_, kind, version, num_perm, seed, scheme, ngram, shingle, bands, rows, band, count, extra) = HEADER.unpack(raw)
    return {"kind": kind, "version": version, "num_perm": num_perm, "seed": seed,
            "scheme": {v: k for k, v in _SCHEMES.items()}.get(scheme, f"unknown({scheme})"),
            "ngram": ngram, "shingle": {v: k for k, v in _SHINGLES.items()}.get(shingle, f"unknown({shingle})"),
            "bands": bands, "rows": rows, "band": band, "count": count, "extra": extra}


def payload_bytes(kind: bytes, num_perm: int, count: int, extra: int) -> int:
    """Bytes after the header that a complete file of this kind and counts holds."""
    if kind == b"SIGS":
        return count * num_perm * 4
    if kind == b"BAND":
        return count * BAND_DTYPE.itemsize
    return 8 * extra + 8 * (count + 1)  # SETS


def check_header(path: str | os.PathLike, kind: bytes, expected: SpillParams) -> dict:
    """Read and validate a header against the parameters the caller will use and the
    file's size (see the module docstring); raises InputError naming the file."""
    h = read_header(path)
    if h["version"] != VERSION:
        raise InputError(f"spill file format version {h['version']} is not supported "
                         f"(this fastsynth reads version {VERSION}); recompute it", source=str(path))
    if h["kind"] != kind:
        raise InputError(f"spill file holds {h['kind'].decode(errors='replace')}, expected {kind.decode()}",
                         source=str(path))
    if h["count"] == UNFINISHED:
        raise InputError("spill file was never finished (its writer stopped before closing "
                         "it); recompute it", source=str(path))
    size = os.path.getsize(path)
    want = HEADER.size + payload_bytes(kind, h["num_perm"], h["count"], h["extra"])
    if size != want:
        raise InputError(f"spill file is {size} bytes but its header describes {want} "
                         f"(truncated or damaged); recompute it", source=str(path))
    for name in ("num_perm", "seed", "scheme", "ngram", "shingle", "bands", "rows"):
        want = getattr(expected, name)
        if kind != b"BAND" and name in ("bands", "rows"):
            continue
        if kind == b"SETS" and name in ("num_perm", "seed", "scheme"):
            continue
        if h[name] != want:
            raise InputError(f"spill file was written with {name}={h[name]!r} but {name}={want!r} "
                             "was requested; recompute it with the same parameters", source=str(path))
    return h


def write_signatures(path: str | os.PathLike, sigs: np.ndarray, params: SpillParams) -> None:
    """Save signatures ``(n, num_perm)`` uint32 in the SIGS format."""
    sigs = np.asarray(sigs)
    if sigs.dtype != np.uint32 or sigs.ndim != 2 or sigs.shape[1] != params.num_perm:
        raise ConfigError(f"sigs must be uint32 (n, {params.num_perm}), got {sigs.dtype} {sigs.shape}")
    w = SpillWriter(path, b"SIGS", params)
    try:
        w.append(sigs, sigs.shape[0])
        w.close()
    except BaseException:
        w.discard()
        raise


def read_signatures(path: str | os.PathLike, params: SpillParams) -> np.ndarray:
    """Memory-map a SIGS file written with ``params`` as uint32 ``(n, num_perm)``."""
    h = check_header(path, b"SIGS", params)
    if h["count"] == 0:
        return np.empty((0, params.num_perm), dtype=np.uint32)
    return np.memmap(path, dtype=np.uint32, mode="r", offset=HEADER.size, shape=(h["count"], params.num_perm))


def read_bands(path: str | os.PathLike, params: SpillParams) -> np.ndarray:
    h = check_header(path, b"BAND", params)
    if h["count"] == 0:
        return np.empty(0, dtype=BAND_DTYPE)
    return np.memmap(path, dtype=BAND_DTYPE, mode="r", offset=HEADER.size, shape=(h["count"],))


def read_sets(path: str | os.PathLike, params: SpillParams) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map a SETS file: (values uint64, offsets int64)."""
    h = check_header(path, b"SETS", params)
    n, nv = h["count"], h["extra"]
    offsets = np.memmap(path, dtype=np.int64, mode="r", offset=HEADER.size + 8 * nv, shape=(n + 1,))
    # The offsets index the values natively: they must start at 0, never fall and end at
    # the number of values (one O(n) pass; a damaged or foreign file is refused here).
    if offsets[0] != 0 or offsets[-1] != nv or (n and np.any(np.diff(offsets) < 0)):
        raise InputError(f"spill file's set offsets are not a rising sequence from 0 to {nv} "
                         "(damaged); recompute it", source=str(path))
    if nv == 0:
        return np.empty(0, dtype=np.uint64), offsets
    values = np.memmap(path, dtype=np.uint64, mode="r", offset=HEADER.size, shape=(nv,))
    return values, offsets
