"""Packed rows as arrays: turn placed pieces and their tokens into the training batch.

The layout (docs/token-shards.md, "Packed batch"; the loader and the training loop agree
on it) for ``R`` rows of ``S = seq_len`` tokens, flattened row-major to ``R*S``:

* ``input_ids`` int64 ``(R, S)`` — the pieces of each row back to back, then ``pad_id``;
* ``labels`` int64 ``(R, S)`` — ``labels[r, t] = input_ids[r, t+1]`` inside a piece,
  ``-100`` on the last token of every piece (its target would cross a document boundary
  or belongs to the next row), on padding, and therefore on the last position of a row;
* ``positions`` int64 ``(R, S)`` — 0, 1, ... restarting at every piece; padding counts
  0, 1, ... from its start too;
* ``cu_seqlens`` int32 ``(n_segments + 1,)`` — offsets into the ``R*S`` flat tokens; every
  piece is one segment, each row's padding (if any) one more; ``cu_seqlens[-1] == R*S``;
* ``max_seqlen`` int, ``n_tokens`` int (real tokens), ``n_target_tokens`` int (labels != -100).

The padded layout (:func:`padded_rows`) puts one document per row, cut at ``S``, with a
``key_mask`` (True on real tokens) for attention without varlen support.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

IGNORE_INDEX = -100


def _segment_arange(lengths: np.ndarray) -> np.ndarray:
    """``concat(arange(l) for l in lengths)`` without a Python loop."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


def packed_rows(pieces: np.ndarray, n_rows: int, seq_len: int,
                tokens: Sequence[np.ndarray], piece_source: np.ndarray,
                piece_offset: np.ndarray, pad_id: int = 0) -> dict[str, Any]:
    """The packed batch (numpy arrays; see the module docstring) of ``n_rows`` rows.

    ``pieces``: :data:`~fastsynth.train.packing.PIECE_DTYPE` entries sorted by row, with
    ``row`` in ``[0, n_rows)`` (only ``row`` and ``length`` are read here). The tokens of
    piece ``k`` are ``tokens[piece_source[k]][piece_offset[k] : piece_offset[k] + length]``
    (``tokens``: 1-D integer arrays, e.g. memory-mapped shard ``.bin`` files).
    """
    S = seq_len
    rows = pieces["row"]
    lens = pieces["length"]
    # where each piece starts inside its row: exclusive cumsum minus the row's first one
    csum = np.cumsum(lens) - lens
    first = np.searchsorted(rows, rows, side="left")
    dest0 = rows * S + (csum - csum[first])
    within = _segment_arange(lens)
    dest = np.repeat(dest0, lens) + within
    src = np.repeat(piece_offset, lens) + within
    ids = np.full(n_rows * S, pad_id, dtype=np.int64)
    if len(tokens) == 1:
        ids[dest] = tokens[0][src]
    else:
        tok_source = np.repeat(piece_source, lens)
        for s in np.unique(piece_source):
            sel = tok_source == s
            ids[dest[sel]] = tokens[int(s)][src[sel]]
    labels = np.full(n_rows * S, IGNORE_INDEX, dtype=np.int64)
    not_last = within < np.repeat(lens, lens) - 1
    d = dest[not_last]
    labels[d] = ids[d + 1]
    used = np.bincount(rows, weights=lens, minlength=n_rows).astype(np.int64)
    pad = S - used
    positions = np.zeros(n_rows * S, dtype=np.int64)
    positions[dest] = within
    pad_rows = np.flatnonzero(pad > 0)
    if pad_rows.size:
        pad_pos = _segment_arange(pad[pad_rows])
        positions[np.repeat(pad_rows * S + used[pad_rows], pad[pad_rows]) + pad_pos] = pad_pos
    # segments: every piece, then the row's padding; ordered by (row, piece before padding)
    seg_row = np.concatenate([rows, pad_rows])
    seg_len = np.concatenate([lens, pad[pad_rows]])
    order = np.argsort(seg_row, kind="stable")
    seg_len = seg_len[order]
    cu = np.zeros(seg_len.size + 1, dtype=np.int32)
    np.cumsum(seg_len, out=cu[1:])
    n_tokens = int(lens.sum())
    return {
        "input_ids": ids.reshape(n_rows, S),
        "labels": labels.reshape(n_rows, S),
        "positions": positions.reshape(n_rows, S),
        "cu_seqlens": cu,
        "max_seqlen": int(seg_len.max()) if seg_len.size else 0,
        "n_tokens": n_tokens,
        "n_target_tokens": int(not_last.sum()),
    }


def padded_rows(doc_tokens: Sequence[np.ndarray], seq_len: int, pad_id: int = 0) -> dict[str, Any]:
    """One document per row, cut at ``seq_len``: ``input_ids``, ``labels``, ``positions``
    (int64 ``(R, S)``) and ``key_mask`` (bool ``(R, S)``, True on real tokens), plus
    ``n_tokens``/``n_target_tokens``. Labels follow the packed layout's rule."""
    R, S = len(doc_tokens), seq_len
    ids = np.full((R, S), pad_id, dtype=np.int64)
    labels = np.full((R, S), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((R, S), dtype=bool)
    n_tok = n_tgt = 0
    for r, toks in enumerate(doc_tokens):
        n = min(len(toks), S)
        ids[r, :n] = toks[:n]
        labels[r, :n - 1] = ids[r, 1:n]
        mask[r, :n] = True
        n_tok += n
        n_tgt += max(n - 1, 0)
    positions = np.broadcast_to(np.arange(S, dtype=np.int64), (R, S)).copy()
    return {"input_ids": ids, "labels": labels, "positions": positions, "key_mask": mask,
            "n_tokens": n_tok, "n_target_tokens": n_tgt}
