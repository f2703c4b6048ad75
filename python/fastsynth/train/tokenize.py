"""Tokenize a corpus into a token shard set (docs/token-shards.md).

The corpus streams through in batches (``fastsynth.corpus.read_batches``); each batch is
encoded by ``tokenizers``' ``encode_batch_fast`` (Rust, all cores, GIL released), the
separator is appended to every document, and the tokens go straight to the open shard
file. Memory is bounded by one batch plus one shard's index, whatever the corpus size.

Every input document is accounted for: ``documents_read == documents_tokenized +
documents_empty + documents_rejected`` (empty = no tokens before the separator; skipped;
rejected = records the reader refused under ``on_error="skip"``, counted by reason in
``rejected``).
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fastsynth.errors import ConfigError
from fastsynth.train.shards import DEFAULT_SHARD_TOKENS, ShardWriter
from fastsynth.train.vocab import LoadedTokenizer, TokenizerSpec, load_tokenizer, parse_tokenizer

#: Documents per encode_batch call: large enough that the Rust side keeps all cores busy,
#: small enough that a batch's Python lists stay a few tens of MB.
DEFAULT_BATCH = 2048
# Exact length histogram up to this many tokens; longer documents are kept in a list
# (rare) — bounded memory for the percentiles.
_HIST_MAX = 1 << 17


@dataclass
class TokenizeSummary:
    """What :func:`tokenize` did. ``length_percentiles``: tokens per tokenized document
    (separator included) at p50/p90/p99/max. ``rejected``: reason -> count (reader
    rejects). ``tokens_per_second``: tokens written per wall-clock second."""

    out: str
    tokenizer: str
    fingerprint: str
    vocab_size: int
    separator: str
    documents_read: int = 0
    documents_tokenized: int = 0
    documents_empty: int = 0
    documents_rejected: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    shards: int = 0
    seconds: float = 0.0
    tokenizer_seconds: float = 0.0
    length_percentiles: dict[str, int] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tokens_per_second"] = self.tokens_per_second
        return d


class _LengthHistogram:
    def __init__(self) -> None:
        self.counts = np.zeros(_HIST_MAX, dtype=np.int64)
        self.long: list[int] = []

    def add(self, lengths: np.ndarray) -> None:
        small = lengths < _HIST_MAX
        self.counts += np.bincount(lengths[small], minlength=_HIST_MAX)
        self.long.extend(lengths[~small].tolist())

    def percentiles(self) -> dict[str, int]:
        n = int(self.counts.sum()) + len(self.long)
        if n == 0:
            return {}
        cum = np.cumsum(self.counts)
        long = sorted(self.long)
        out = {}
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
            rank = max(1, int(np.ceil(q * n)))  # nearest-rank percentile
            if rank <= cum[-1]:
                out[name] = int(np.searchsorted(cum, rank))
            else:
                out[name] = int(long[rank - int(cum[-1]) - 1])
        return out


def encode_documents(tok: LoadedTokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(flat, lengths)``: the documents' ids, separator appended, back to back (uint32),
    and each document's length (int64; 0 for an empty document, which gets no separator)."""
    # encode_batch_fast (tokenizers >= 0.20) skips the character offsets we never use
    encode = getattr(tok.tok, "encode_batch_fast", tok.tok.encode_batch)
    encs = encode(texts, add_special_tokens=False)
    ids = [e.ids for e in encs]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    sep = tok.separator_id
    for lst in ids:
        if lst:
            lst.append(sep)
    lengths[lengths > 0] += 1
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.uint32, count=int(lengths.sum()))
    return flat, lengths


class ShardSetBuilder:
    """The part of tokenizing that does not depend on where documents are encoded: the
    tokenizer loaded (or trained, for ``bpe:N``), the open :class:`ShardWriter`, the
    running counts and length histogram, and the summary and manifest at the end. Used by
    :func:`tokenize` (encoding in-process) and by ``fastsynth tokenize --executor ray``
    (:mod:`fastsynth.run.tokenize_job`: encoding in parts, appended here in part order)."""

    def __init__(self, source: Any, out: str | os.PathLike, *, tokenizer: Any, shard_tokens: int,
                 batch_size: int, text_field: str, on_error: str, overwrite: bool):
        from fastsynth.corpus import read

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.t0 = time.perf_counter()
        self.source = source
        if isinstance(tokenizer, LoadedTokenizer):  # already loaded (e.g. reused across calls)
            tok = tokenizer
        else:
            spec = parse_tokenizer(tokenizer)
            texts = None
            if spec.kind == "bpe":
                reader = read(source, text_field, on_error=on_error)
                limit = spec.train_documents
                texts = (r["text"] for r in (reader if limit is None else itertools.islice(reader, limit)))
            tok = load_tokenizer(spec, texts)
        self.tok = tok
        self.summary = TokenizeSummary(out=os.fspath(out), tokenizer=tok.description,
                                       fingerprint=tok.fingerprint, vocab_size=tok.vocab_size,
                                       separator=tok.separator)
        self.summary.tokenizer_seconds = time.perf_counter() - self.t0
        self.writer = ShardWriter(out, vocab_size=tok.vocab_size, tokenizer_json=tok.json,
                                  fingerprint=tok.fingerprint, separator=tok.separator,
                                  separator_id=tok.separator_id, shard_tokens=shard_tokens,
                                  overwrite=overwrite)
        self.hist = _LengthHistogram()

    def add(self, ids: list, flat: np.ndarray, lengths: np.ndarray) -> None:
        """One batch in input order: ``flat`` its tokens, ``lengths`` per document (0 =
        empty: counted, not written)."""
        keep = lengths > 0
        if not keep.all():
            ids = [i for i, k in zip(ids, keep.tolist()) if k]
        self.writer.add_flat(flat, lengths[keep], ids)
        self.hist.add(lengths[keep])
        self.summary.documents_tokenized += int(keep.sum())
        self.summary.documents_empty += int((~keep).sum())
        self.summary.tokens += int(flat.size)

    def abort(self) -> None:
        self.writer.abort()

    def finish(self, read: int, rejected: int, rejected_by_reason: dict[str, int]) -> TokenizeSummary:
        """Close the shard set with the reader's counts (``read`` includes its rejects:
        read = tokenized + empty + rejected) and return the summary."""
        s = self.summary
        s.documents_read, s.documents_rejected = int(read), int(rejected)
        s.rejected = dict(rejected_by_reason)
        s.length_percentiles = self.hist.percentiles()
        s.seconds = time.perf_counter() - self.t0
        manifest_extra = {"made_by": {"source": _describe(self.source), "tokenizer": self.tok.description,
                                      "counts": {k: v for k, v in s.as_dict().items()
                                                 if k.startswith("documents") or k in ("rejected", "tokens")}}}
        s.shards = len(self.writer.close(manifest_extra)["shards"])
        return s


def tokenize(source: Any, out: str | os.PathLike, *,
             tokenizer: str | os.PathLike | TokenizerSpec | LoadedTokenizer | None = None,
             shard_tokens: int = DEFAULT_SHARD_TOKENS, batch_size: int = DEFAULT_BATCH,
             text_field: str = "text", on_error: str = "raise", rejects: Any = None,
             overwrite: bool = False, show_progress: bool | None = None) -> TokenizeSummary:
    """Tokenize ``source`` (anything :func:`fastsynth.corpus.read` accepts) into the shard
    set folder ``out``.

    ``tokenizer``: ``"embedded"`` (default), ``"bpe:N"`` (train N tokens on ``source``
    first: one extra pass), a tokenizer.json / folder / .gguf path (see
    :mod:`fastsynth.train.vocab`), or a :class:`~fastsynth.train.vocab.LoadedTokenizer`. ``shard_tokens`` bounds each shard's tokens;
    ``batch_size`` documents are encoded per call. ``on_error``/``rejects`` as in
    :func:`fastsynth.corpus.read`. Returns a :class:`TokenizeSummary`; the manifest holds
    the same counts.
    """
    from fastsynth.corpus import read_batches
    from fastsynth.progress import progress

    build = ShardSetBuilder(source, out, tokenizer=tokenizer, shard_tokens=shard_tokens,
                            batch_size=batch_size, text_field=text_field, on_error=on_error,
                            overwrite=overwrite)
    bar = progress(desc="tokenize", unit="doc", enabled=show_progress)
    batches = read_batches(source, batch_size, text_field, on_error=on_error, rejects=rejects)
    try:
        with batches:
            for batch in batches:
                texts_b = batch.column(1).to_pylist()
                flat, lengths = encode_documents(build.tok, texts_b)
                build.add(batch.column(0).to_pylist(), flat, lengths)
                bar.update(len(texts_b))
                bar.set_postfix(tokens=build.summary.tokens, refresh=False)
            stats = batches.stats
    except BaseException:
        build.abort()
        bar.close()
        raise
    bar.close()
    return build.finish(stats.read, stats.rejected, stats.rejected_by_reason)


def _describe(source: Any) -> Any:
    if isinstance(source, (list, tuple)):
        return [_describe(s) for s in source]
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else repr(source)
