"""Fuzz target: the native LSH and clustering primitives (``band_keys``, ``bucket_pairs``,
``pair_jaccard``, ``union_pairs``, ``resolve_roots``; fastsynth.dedup.lsh/cluster call them).

Input: which primitive, then its arrays (small: up to 12 documents, 16 permutations,
values from a small range so that buckets and shared shingles occur). Inputs outside a
primitive's documented preconditions (unsorted buckets, sets not sorted and distinct) are
also passed: those must not crash or read out of bounds (the sanitized run), but only
valid inputs are compared with the references.

Failure (a :class:`Finding`, or any exception escaping ``check``):

* ``band_keys``: a key that is not ``hash64`` of the band's little-endian uint32 values;
  invalid bands/rows not refused with ``ValueError``;
* ``bucket_pairs`` (input sorted by key, id): a pair that does not share a bucket, a pair
  listed twice, or a bucket whose members are not all connected by the pairs (all pairs up
  to ``max_all`` members, a star from the lowest id beyond);
* ``pair_jaccard``: a value that differs from ``|A & B| / |A | B|`` (0 for two empty
  sets); out-of-range pairs or malformed offsets not refused with ``ValueError``;
* ``union_pairs`` + ``resolve_roots``: labels that are not each component's smallest
  index; an invalid ``parent`` array not refused with ``ValueError``.
"""
from __future__ import annotations

import numpy as np

from bytesource import ByteSource
from harness import Finding, instrumented, main

with instrumented():
    from fastsynth import _native

KNOWN: dict[str, str] = {}


def _band_keys(src: ByteSource) -> None:
    n, p = src.int(0, 12), src.int(1, 16)
    sigs = np.array([[src.int(0, 3) for _ in range(p)] for _ in range(n)], dtype=np.uint32).reshape(n, p)
    bands, rows = src.int(0, 9), src.int(0, 9)
    try:
        keys = _native.band_keys(sigs, bands, rows, src.int(1, 3))
    except ValueError:
        if 1 <= bands and 1 <= rows and bands * rows <= p:
            raise Finding("valid_refused", f"bands={bands} rows={rows} p={p}")
        return
    if not (1 <= bands and 1 <= rows and bands * rows <= p):
        raise Finding("invalid_accepted", f"bands={bands} rows={rows} p={p}")
    for i in range(n):
        for j in range(bands):
            want = _native.hash64(sigs[i, j * rows:(j + 1) * rows].astype("<u4").tobytes())
            if int(keys[i, j]) != want:
                raise Finding("wrong_band_key", f"row {i} band {j}: {int(keys[i, j])} != {want}")


def _bucket_pairs(src: ByteSource) -> None:
    m = src.int(0, 24)
    keys = np.array([src.int(0, 3) for _ in range(m)], dtype=np.uint64)
    ids = np.array([src.int(0, 15) for _ in range(m)], dtype=np.int64)
    max_all = src.int(0, 6)
    if src.int(0, 3):  # most inputs respect the precondition: one band, so each document
        # holds one key, sorted by (key, id)
        first = {}
        for k, i in zip(keys.tolist(), ids.tolist()):
            first.setdefault(i, k)
        pairs = sorted((k, i) for i, k in first.items())
        keys = np.array([k for k, _ in pairs], dtype=np.uint64)
        ids = np.array([i for _, i in pairs], dtype=np.int64)
        valid = True
    else:
        valid = False
    u, v = _native.bucket_pairs(keys, ids, max_all)
    if len(u) != len(v):
        raise Finding("wrong_shape", f"{len(u)} != {len(v)}")
    if not valid:
        return
    bucket_of: dict[int, set[int]] = {}
    for k, i in zip(keys.tolist(), ids.tolist()):
        bucket_of.setdefault(k, set()).add(i)
    edges = list(zip(u.tolist(), v.tolist()))
    if len(set(map(frozenset, edges))) != len(edges):
        raise Finding("duplicate_pair", f"{edges}")
    for a, b in edges:
        if a == b or not any(a in s and b in s for s in bucket_of.values()):
            raise Finding("pair_outside_bucket", f"({a}, {b}) in buckets {bucket_of}")
    for members in bucket_of.values():
        ms = sorted(members)
        if len(ms) <= max_all:
            want = {frozenset((a, b)) for x, a in enumerate(ms) for b in ms[x + 1:]}
            if not want <= set(map(frozenset, edges)):
                raise Finding("missing_pair", f"bucket {ms} (max_all {max_all}): {edges}")
        elif not {frozenset((ms[0], b)) for b in ms[1:]} <= set(map(frozenset, edges)):
            raise Finding("missing_star", f"bucket {ms} (max_all {max_all}): {edges}")


def _pair_jaccard(src: ByteSource) -> None:
    n = src.int(0, 6)
    sorted_sets = src.int(0, 3) != 0
    sets = []
    for _ in range(n):
        vals = [src.int(0, 9) for _ in range(src.int(0, 6))]
        sets.append(sorted(set(vals)) if sorted_sets else vals)
    values = np.array([x for s in sets for x in s], dtype=np.uint64)
    offsets = np.cumsum([0] + [len(s) for s in sets]).astype(np.int64)
    if src.int(0, 7) == 0 and offsets.size:
        offsets[src.int(0, offsets.size - 1)] += src.int(-3, 3)
    k = src.int(0, 8)
    u = np.array([src.int(-1, n) for _ in range(k)], dtype=np.int64)
    v = np.array([src.int(-1, n) for _ in range(k)], dtype=np.int64)
    ok_offsets = offsets.size >= 1 and offsets[0] == 0 and offsets[-1] == values.size \
        and bool(np.all(np.diff(offsets) >= 0))
    ok_pairs = bool(np.all((u >= 0) & (u < n) & (v >= 0) & (v < n))) if k else True
    try:
        got = _native.pair_jaccard(values, offsets, u, v, src.int(1, 3))
    except ValueError:
        if ok_offsets and ok_pairs:
            raise Finding("valid_refused", f"offsets {offsets.tolist()} pairs {u.tolist()} {v.tolist()}")
        return
    if not (ok_offsets and ok_pairs):
        raise Finding("invalid_accepted", f"offsets {offsets.tolist()} pairs {u.tolist()} {v.tolist()}")
    if not sorted_sets or not np.array_equal(offsets, np.cumsum([0] + [len(s) for s in sets])):
        return
    for x in range(k):
        a, b = set(sets[u[x]]), set(sets[v[x]])
        want = len(a & b) / len(a | b) if a | b else 0.0
        if got[x] != want:
            raise Finding("wrong_jaccard", f"{sorted(a)} vs {sorted(b)}: {got[x]} != {want}")


def _union_find(src: ByteSource) -> None:
    n = src.int(0, 12)
    valid_parent = src.int(0, 5) != 0
    parent = np.arange(n, dtype=np.int64)
    if not valid_parent and n:
        parent[src.int(0, n - 1)] = src.int(-2, n + 2)
    k = src.int(0, 10)
    u = np.array([src.int(0, max(0, n - 1)) for _ in range(k)], dtype=np.int64)
    v = np.array([src.int(0, max(0, n - 1)) for _ in range(k)], dtype=np.int64)
    keep = np.array([src.int(0, 1) for _ in range(k)], dtype=np.uint8) if src.bool() else None
    bad = any(not 0 <= parent[i] <= i for i in range(n)) or (n == 0 and k > 0)
    # reference: a valid parent array may already join i to a smaller j
    label = parent.tolist()
    try:
        _native.union_pairs(parent, u, v, keep)
    except ValueError:
        if not bad:
            raise Finding("valid_refused", f"parent {parent.tolist()} pairs {u.tolist()} {v.tolist()}")
        return
    if bad:
        raise Finding("invalid_accepted", f"parent {parent.tolist()}")
    _native.resolve_roots(parent)

    def root(x: int) -> int:
        while label[x] != x:
            x = label[x]
        return x

    for x in range(k):
        if keep is None or keep[x]:
            ra, rb = root(int(u[x])), root(int(v[x]))
            label[max(ra, rb)] = min(ra, rb)
    want = [root(i) for i in range(n)]
    if parent.tolist() != want:
        raise Finding("wrong_components", f"{parent.tolist()} != {want}")


def check(data: bytes) -> None:
    src = ByteSource(data)
    src.choice([_band_keys, _bucket_pairs, _pair_jaccard, _union_find])(src)


if __name__ == "__main__":
    main(check, KNOWN)
