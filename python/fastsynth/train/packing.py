"""Where documents go: pack token counts into rows of ``seq_len`` tokens, and what it costs.

:func:`pack` is the native packer (``csrc/pack.cpp``; docs/token-shards.md, "Packing"):

* ``"best-fit"`` — best-fit decreasing (Ding et al. 2024): documents longer than
  ``seq_len`` are cut into ``seq_len``-token chunks (the last chunk holds the rest), the
  pieces are placed longest first, each into the open row with the least free space that
  still holds it. O(n log seq_len).
* ``"first-fit"`` — the same chunks, placed in input order into the lowest-numbered row
  with room (online first fit: keeps corpus order roughly, packs less tightly).
* ``"concat"`` — concatenate all documents in input order and cut every ``seq_len``
  tokens: no padding except the last row, but most documents are split across rows.

:func:`pack_stats` measures padding, split documents and truncation per method, and adds
``"padded"`` (one document per row, cut at ``seq_len``: the layout without varlen
attention) for comparison.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from fastsynth.errors import ConfigError

#: One placed piece: tokens ``[start, start + length)`` of document ``doc`` go into row
#: ``row``. All int64; the native packer writes this layout directly.
PIECE_DTYPE = np.dtype([("row", np.int64), ("doc", np.int64), ("start", np.int64),
                        ("length", np.int64)])
PackMethod = Literal["best-fit", "first-fit", "concat"]
METHODS: tuple[str, ...] = ("best-fit", "first-fit", "concat")
#: Documents the loader packs at once (its shuffle window): large enough that best fit
#: finds partners for long documents' tails, small enough to pack in milliseconds.
DEFAULT_WINDOW = 8192
#: Methods :func:`pack_stats` knows: the packers plus the padded layout.
STAT_METHODS: tuple[str, ...] = (*METHODS, "padded")


def _check_lengths(lengths: Any) -> np.ndarray:
    arr = np.asarray(lengths)
    if arr.ndim != 1:
        raise ConfigError(f"lengths must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"lengths must hold integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_seq_len(seq_len: Any) -> int:
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 2:
        raise ConfigError(f"seq_len must be an integer >= 2, got {seq_len!r}")
    return int(seq_len)


def pack(lengths: Any, seq_len: int, method: PackMethod = "best-fit") -> np.ndarray:
    """Place documents of ``lengths`` tokens into rows of ``seq_len`` tokens.

    ``lengths``: 1-D integers (tokens per document, EOS included), index = document id.
    Returns a structured array of :data:`PIECE_DTYPE` (``row``, ``doc``, ``start``,
    ``length``; int64), one entry per placed piece, sorted by row (inside a row, in
    placement order). Every token of every document lands in exactly one row; no row
    holds more than ``seq_len`` tokens; rows are numbered ``0..n_rows-1`` without gaps.
    Documents of length 0 place nothing. Raises ``ConfigError`` naming ``seq_len``,
    ``method`` or ``lengths`` (negative entry, wrong shape or dtype, a sum past int64),
    or ``seq_len`` over 2**24 for ``"best-fit"`` (its tables take ~17 bytes per token of
    ``seq_len``; the other methods take any ``seq_len``).
    """
    from fastsynth import _native

    seq_len = _check_seq_len(seq_len)
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    arr = _check_lengths(lengths)
    if arr.size and arr.min() < 0:
        i = int(np.argmin(arr))
        raise ConfigError(f"lengths[{i}] is negative ({int(arr[i])})")
    try:
        flat = _native.pack(arr, seq_len, method)
    except ValueError as e:  # the native checks: seq_len bound for best-fit, lengths' sum
        raise ConfigError(str(e)) from e
    return flat.view(PIECE_DTYPE).reshape(-1)


@dataclass(frozen=True)
class PackStats:
    """What a packing costs, for one method over one set of documents.

    ``padding_fraction`` = padding tokens / (rows × seq_len); ``split_fraction`` =
    documents placed in more than one piece / documents (empty documents excluded);
    ``truncated_tokens`` are tokens that land in no row (only the padded layout drops
    any); ``tokens_per_row`` = real tokens / rows.
    """

    method: str
    seq_len: int
    documents: int
    tokens: int
    rows: int
    padding_tokens: int
    padding_fraction: float
    documents_split: int
    split_fraction: float
    truncated_tokens: int
    tokens_per_row: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pack_stats(lengths: Any, seq_len: int, method: str = "best-fit") -> PackStats:
    """:class:`PackStats` of packing ``lengths`` with ``method`` (one of :data:`STAT_METHODS`)."""
    seq_len = _check_seq_len(seq_len)
    arr = _check_lengths(lengths)
    if method not in STAT_METHODS:
        raise ConfigError(f"method must be one of {', '.join(STAT_METHODS)}, got {method!r}")
    nonempty = arr[arr > 0]
    docs, tokens = int(nonempty.size), int(nonempty.sum())
    if method == "padded":
        rows = docs
        kept = int(np.minimum(nonempty, seq_len).sum())
        split, truncated = 0, tokens - kept
    else:
        pieces = pack(arr, seq_len, method)
        rows = int(pieces["row"][-1]) + 1 if pieces.size else 0
        kept = int(pieces["length"].sum())
        per_doc = np.bincount(pieces["doc"], minlength=arr.size)
        split, truncated = int((per_doc > 1).sum()), tokens - kept
    padding = rows * seq_len - kept
    return PackStats(method=method, seq_len=seq_len, documents=docs, tokens=tokens, rows=rows,
                     padding_tokens=padding,
                     padding_fraction=padding / (rows * seq_len) if rows else 0.0,
                     documents_split=split, split_fraction=split / docs if docs else 0.0,
                     truncated_tokens=truncated,
                     tokens_per_row=kept / rows if rows else 0.0)
