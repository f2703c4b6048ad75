"""Fuzz target: sequence packing (``fastsynth.train.pack``, native ``csrc/pack.cpp``).

Input: a method, ``seq_len`` (2 to 4096, or an invalid value), up to 64 document
lengths (0 to 20,000 tokens; one input in eight holds a negative length or a float
array). Sizes stay where the result fits in memory: the limits (lengths whose sum
overflows int64, a ``seq_len`` of 2**62) are regression tests, not fuzzed (a fuzzer
that asks for terabytes of pieces measures the machine, not the packer).

Failure (a :class:`Finding`, or any exception escaping ``check``):

* invalid arguments not refused with ``ConfigError``, or valid ones refused;
* a token lost or placed twice: each document's pieces, by ``start``, must tile
  ``[0, length)`` exactly; a zero-length document must place nothing;
* a row over ``seq_len`` tokens, rows not numbered ``0..n_rows-1`` without gaps, or
  pieces not sorted by row;
* a piece longer than ``seq_len`` or, for best-fit and first-fit, chunks that are not the
  documented ``seq_len``-token cuts (the last chunk holds the rest);
* first-fit rows differing from the Python reference (input order, lowest row with room);
  concat rows differing from cutting the concatenation every ``seq_len`` tokens;
  best-fit using more rows than best-fit decreasing over the same chunks.
"""
from __future__ import annotations

import numpy as np

from bytesource import ByteSource
from harness import Finding, instrumented, main

with instrumented():
    from fastsynth.errors import ConfigError
    from fastsynth.train import packing

KNOWN: dict[str, str] = {}


def _chunks(lengths: list[int], seq_len: int) -> list[tuple[int, int, int]]:
    """``(doc, start, length)`` of the documented cuts, in input order."""
    out = []
    for d, n in enumerate(lengths):
        for s in range(0, n, seq_len):
            out.append((d, s, min(seq_len, n - s)))
    return out


def _first_fit(chunks: list[tuple[int, int, int]], seq_len: int) -> list[tuple[int, int, int, int]]:
    free: list[int] = []
    placed = []
    for d, s, n in chunks:
        row = next((r for r, f in enumerate(free) if f >= n), None)
        if row is None:
            row = len(free)
            free.append(seq_len)
        free[row] -= n
        placed.append((row, d, s, n))
    return sorted(placed, key=lambda p: p[0])  # stable: placement order inside a row


def _best_fit_rows(chunks: list[tuple[int, int, int]], seq_len: int) -> int:
    free: list[int] = []
    for n in sorted((c[2] for c in chunks), reverse=True):
        fits = [f for f in free if f >= n]
        if fits:
            free[free.index(min(fits))] -= n
        else:
            free.append(seq_len - n)
    return len(free)


def _concat(lengths: list[int], seq_len: int) -> list[tuple[int, int, int, int]]:
    out, pos = [], 0
    for d, n in enumerate(lengths):
        s = 0
        while s < n:
            room = seq_len - pos % seq_len
            take = min(room, n - s)
            out.append((pos // seq_len, d, s, take))
            s += take
            pos += take
    return out


def check(data: bytes) -> None:
    src = ByteSource(data)
    method = src.choice(packing.METHODS)
    invalid = src.int(0, 7) == 0
    seq_len = src.int(2, 4096)
    lengths = [src.choice([0, 1, 2, seq_len - 1, seq_len, seq_len + 1, src.int(0, 20000)])
               for _ in range(src.int(0, 64))]
    arg: object = np.array(lengths, dtype=np.int64)
    if invalid:
        what = src.int(0, 3)
        if what == 0 and lengths:
            lengths[src.int(0, len(lengths) - 1)] = -src.int(1, 2**62)
            arg = np.array(lengths, dtype=np.int64)
        elif what == 1:
            seq_len = src.choice([-1, 0, 1, True, 2.5])
        elif what == 2:
            arg = np.array(lengths, dtype=np.float64) + 0.5
        else:
            arg = np.array(lengths, dtype=np.int64).reshape(1, -1)
        try:
            packing.pack(arg, seq_len, method)
        except ConfigError:
            return
        except Exception as e:
            raise Finding("non_config_error", f"{type(e).__name__}: {e}") from e
        if what in (0, 2) and not lengths:
            return  # nothing was made invalid: an empty array of any dtype is no documents
        if what != 0 or any(n < 0 for n in lengths):
            raise Finding("invalid_accepted", f"pack({arg!r:.100}, {seq_len!r}, {method})")
        return
    try:
        pieces = packing.pack(arg, seq_len, method)
    except Exception as e:
        raise Finding("valid_refused", f"{type(e).__name__}: {e}") from e
    if pieces.dtype != packing.PIECE_DTYPE:
        raise Finding("wrong_dtype", f"{pieces.dtype}")
    rows = pieces["row"]
    if rows.size and (rows[0] != 0 or np.any(np.diff(rows) < 0) or np.any(np.diff(rows) > 1)):
        raise Finding("bad_rows", f"rows not 0..n-1 in order: {rows[:20].tolist()}")
    if np.any(pieces["length"] < 1) or np.any(pieces["length"] > seq_len):
        raise Finding("bad_piece", f"piece lengths outside [1, {seq_len}]")
    if rows.size and np.any(np.bincount(rows, weights=pieces["length"]) > seq_len):
        raise Finding("row_overflow", f"a row holds more than {seq_len} tokens")
    got = [tuple(int(x) for x in p) for p in pieces.tolist()]
    for d, n in enumerate(lengths):
        mine = sorted((s, ln) for r, dd, s, ln in got if dd == d)
        pos = 0
        for s, ln in mine:
            if s != pos:
                raise Finding("token_lost_or_duplicated", f"doc {d} (length {n}): pieces {mine[:10]}")
            pos += ln
        if pos != n:
            raise Finding("token_lost_or_duplicated", f"doc {d} (length {n}) covers {pos} tokens")
    if any(not 0 <= dd < len(lengths) for _, dd, _, _ in got):
        raise Finding("bad_piece", "a piece names a document that does not exist")
    chunks = _chunks(lengths, seq_len)
    if method == "concat":
        want = _concat(lengths, seq_len)
        if got != want:
            raise Finding("differs_from_reference", f"concat {got[:8]} != {want[:8]}")
        return
    if sorted((d, s, n) for _, d, s, n in got) != sorted(chunks):
        raise Finding("wrong_chunks", f"{method}: pieces are not the seq_len cuts")
    if method == "first-fit":
        want = _first_fit(chunks, seq_len)
        if got != want:
            raise Finding("differs_from_reference", f"first-fit {got[:8]} != {want[:8]}")
    else:
        n_rows = int(rows[-1]) + 1 if rows.size else 0
        best = _best_fit_rows(chunks, seq_len)
        if n_rows > best:
            raise Finding("worse_than_best_fit", f"{n_rows} rows, best-fit decreasing needs {best}")


if __name__ == "__main__":
    main(check, KNOWN)
