"""Packing statistics of a shard set: padding, split documents, truncation, tokens per row.

The loader packs documents window by window (``window`` documents at a time, see
:mod:`fastsynth.train.loader`); :func:`shard_stats` packs the set the same way, in corpus
order, and sums the windows, so its figures are the ones training will see (up to the
shuffle). Memory: one window's lengths and pieces.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastsynth.train.packing import DEFAULT_WINDOW, STAT_METHODS, PackStats, pack_stats


def combine(parts: Sequence[PackStats]) -> PackStats:
    """Sum :class:`PackStats` of disjoint document sets packed with the same method and seq_len."""
    if not parts:
        raise ValueError("combine needs at least one PackStats")
    first = parts[0]
    docs = sum(p.documents for p in parts)
    tokens = sum(p.tokens for p in parts)
    rows = sum(p.rows for p in parts)
    pad = sum(p.padding_tokens for p in parts)
    split = sum(p.documents_split for p in parts)
    trunc = sum(p.truncated_tokens for p in parts)
    S = first.seq_len
    return PackStats(method=first.method, seq_len=S, documents=docs, tokens=tokens, rows=rows,
                     padding_tokens=pad, padding_fraction=pad / (rows * S) if rows else 0.0,
                     documents_split=split, split_fraction=split / docs if docs else 0.0,
                     truncated_tokens=trunc, tokens_per_row=(tokens - trunc) / rows if rows else 0.0)


def lengths_stats(lengths: np.ndarray, seq_len: int, methods: Sequence[str] = STAT_METHODS,
                  window: int | None = None) -> list[PackStats]:
    """One :class:`PackStats` per method for documents of ``lengths``, packed ``window``
    documents at a time (``None``: all at once)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    step = window or max(lengths.size, 1)
    out = []
    for m in methods:
        parts = [pack_stats(lengths[a:a + step], seq_len, m) for a in range(0, max(lengths.size, 1), step)]
        out.append(combine(parts))
    return out


def shard_stats(shards: object, seq_len: int = 2048, methods: Sequence[str] = STAT_METHODS,
                window: int | None = None) -> list[PackStats]:
    """Packing statistics of a shard set (a :class:`~fastsynth.train.shards.ShardSet` or
    its folder) at ``seq_len``, one :class:`PackStats` per method; ``window`` as the loader's
    (default: :data:`fastsynth.train.packing.DEFAULT_WINDOW`)."""
    from fastsynth.train.shards import ShardSet

    ss = shards if isinstance(shards, ShardSet) else ShardSet(shards, verify=False)  # type: ignore[arg-type]
    return lengths_stats(ss.lengths, seq_len, methods, window or DEFAULT_WINDOW)


def format_table(stats: Sequence[PackStats]) -> str:
    """A plain-text table, one line per method."""
    head = f"{'method':<10} {'rows':>10} {'padding':>8} {'docs split':>11} {'truncated':>10} {'tokens/row':>10}"
    lines = [head]
    for s in stats:
        lines.append(f"{s.method:<10} {s.rows:>10,} {s.padding_fraction:>7.2%} {s.split_fraction:>10.2%} "
                     f"{s.truncated_tokens:>10,} {s.tokens_per_row:>10.1f}")
    return "\n".join(lines)
