"""``read`` and ``read_batches``: stream a corpus as records or as Arrow batches.

Both return a reader: an iterator (single pass, like a file) with a live ``.stats``
(:class:`~fastsynth.corpus.rejects.ReadStats`), a ``close()`` method and context-manager
support. The rejects file, when ``rejects`` is a path, is written when the reader is
exhausted or closed (use ``with`` when you may stop early).

Record shape (``read``): ``{"id": str, "text": str, **other_fields}``. ``other_fields`` are
the input's other top-level fields (JSONL keys, Parquet columns; ``kind`` for the builtin
corpus; none for text files). ``id`` and ``text`` always hold the normalised values: an
input field literally named ``id`` or ``text`` that is not ``id_field``/``text_field`` is
not carried over.

Batch shape (``read_batches``): ``pyarrow.RecordBatch`` with columns ``id`` (``string``)
and ``text`` (``large_string``), at most ``batch_size`` rows, records in input order.

In raise mode the first bad input raises :class:`~fastsynth.errors.InputError`; records
already gathered into the pending batch (or Parquet batch) are not yielded.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from fastsynth.corpus.builtin import builtin_documents
from fastsynth.corpus.compressed import require_zstandard
from fastsynth.corpus.jsonl import iter_jsonl
from fastsynth.corpus.parquet import iter_parquet
from fastsynth.corpus.rejects import ErrorPolicy, ReadStats
from fastsynth.corpus.sources import SourceFile, resolve
from fastsynth.corpus.textfile import read_text_file
from fastsynth.errors import ConfigError

BATCH_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.large_string())])
# Rows per Parquet batch when reading records: bounds memory like read_batches does.
_RECORD_BATCH_ROWS = 1024


class CorpusReader:
    """A single-pass iterator over records or batches, with live ``stats``."""

    def __init__(self, gen: Iterator[Any], policy: ErrorPolicy):
        self._gen = gen
        self._policy = policy

    @property
    def stats(self) -> ReadStats:
        """Counts so far: ``read == yielded + rejected`` between items (see ``rejects``)."""
        return self._policy.stats

    def __iter__(self) -> CorpusReader:
        return self

    def __next__(self) -> Any:
        return next(self._gen)

    def close(self) -> None:
        """Stop reading and finish the rejects file (idempotent)."""
        self._gen.close()
        self._policy.close()

    def __enter__(self) -> CorpusReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read(source: Any, text_field: str = "text", *, id_field: str = "id",
         on_error: str = "raise", rejects: Any = None) -> CorpusReader:
    """Stream the records of ``source`` as dicts ``{"id", "text", **other_fields}``.

    ``source``: a path (``.jsonl``/``.ndjson`` plain, ``.gz`` or ``.zst``; ``.parquet``;
    ``.txt``/``.md``), a directory, a glob, ``"builtin:python-docs"`` or a list of these
    (see :mod:`fastsynth.corpus.sources`). ``text_field``/``id_field`` name the input
    fields holding the text and the id (ids fall back to ``"<file>:<line>"`` for JSONL,
    1-based, and ``"<file>:<row>"`` for Parquet, 0-based). ``on_error``: ``"raise"``
    (``InputError`` naming file and line/row) or ``"skip"`` (reject entry to ``rejects``,
    a path or an object with ``append``; counted in ``.stats``).
    Memory is constant in corpus size. Arguments after ``text_field`` are keyword-only:
    a call written for the first signature, ``read(source, text_field, on_error)``, fails
    loudly instead of passing ``on_error`` as ``id_field`` (which came later).
    """
    files, policy = _prepare(source, text_field, id_field, on_error, rejects)
    return CorpusReader(_records(files, text_field, id_field, policy), policy)


def read_batches(source: Any, batch_size: int = 4096, text_field: str = "text", *,
                 id_field: str = "id", on_error: str = "raise",
                 rejects: Any = None) -> CorpusReader:
    """Stream ``source`` as ``pyarrow.RecordBatch`` es of ``id`` (string), ``text`` (large_string).

    Same sources, ids and error handling as :func:`read`. ``batch_size`` bounds the rows
    per batch (Parquet batches follow the file's batches, so may be smaller). Parquet text
    is read and checked with pyarrow, without per-row Python objects.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    files, policy = _prepare(source, text_field, id_field, on_error, rejects)
    return CorpusReader(_batches(files, text_field, id_field, policy, batch_size), policy)


def _prepare(source: Any, text_field: str, id_field: str, on_error: str,
             rejects: Any) -> tuple[list[SourceFile], ErrorPolicy]:
    for name, value in (("text_field", text_field), ("id_field", id_field)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    files = resolve(source)
    if not files:  # only an empty list gets here: directories and globs raise themselves
        raise ConfigError("source is an empty list: nothing to read")
    if any(sf.compression == "zstd" for sf in files):
        require_zstandard()  # one clear error before reading, not a reject per file
    policy = ErrorPolicy(on_error, rejects)  # checks on_error and rejects first
    return files, policy


def _items(sf: SourceFile, text_field: str, id_field: str,
           policy: ErrorPolicy) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(id, text, fields)`` of one non-Parquet source; ``fields`` may hold extras."""
    if sf.kind == "jsonl":
        yield from iter_jsonl(sf, text_field, id_field, policy)
    elif sf.kind == "text":
        item = read_text_file(sf, policy)
        if item is not None:
            yield item[0], item[1], {}
    elif sf.kind == "builtin":
        yield from builtin_documents(sf.name)
    else:  # "missing"
        policy.reject(sf.display, "unreadable_file", sf.problem or "cannot read")


def _extras(fields: dict[str, Any], text_field: str, id_field: str) -> dict[str, Any]:
    drop = {text_field, id_field, "id", "text"}
    return {k: v for k, v in fields.items() if k not in drop}


def _records(files: list[SourceFile], text_field: str, id_field: str,
             policy: ErrorPolicy) -> Iterator[dict[str, Any]]:
    stats = policy.stats
    try:
        for sf in files:
            stats.files += 1
            if sf.kind == "parquet":
                for ids, _, batch in iter_parquet(sf, text_field, id_field, policy,
                                                  _RECORD_BATCH_ROWS, all_columns=True):
                    for ident, row in zip(ids.to_pylist(), batch.to_pylist(), strict=True):
                        rec = {"id": ident, "text": row[text_field]}
                        rec.update(_extras(row, text_field, id_field))
                        stats.read += 1
                        stats.yielded += 1
                        yield rec
                continue
            for ident, text, fields in _items(sf, text_field, id_field, policy):
                rec = {"id": ident, "text": text}
                rec.update(_extras(fields, text_field, id_field))
                stats.read += 1
                stats.yielded += 1
                yield rec
    finally:
        policy.close()


def _batches(files: list[SourceFile], text_field: str, id_field: str, policy: ErrorPolicy,
             batch_size: int) -> Iterator[pa.RecordBatch]:
    stats = policy.stats
    ids: list[str] = []
    texts: list[str] = []

    def counted(batch: pa.RecordBatch) -> pa.RecordBatch:
        stats.read += batch.num_rows
        stats.yielded += batch.num_rows
        return batch

    try:
        for sf in files:
            stats.files += 1
            if sf.kind == "parquet":
                if ids:  # keep input order: flush what came before this file
                    yield counted(_to_batch(ids, texts))
                    ids, texts = [], []
                for pids, ptexts, _ in iter_parquet(sf, text_field, id_field, policy,
                                                     batch_size, all_columns=False):
                    yield counted(pa.RecordBatch.from_arrays([pids, ptexts], schema=BATCH_SCHEMA))
                continue
            for ident, text, _ in _items(sf, text_field, id_field, policy):
                ids.append(ident)
                texts.append(text)
                if len(ids) >= batch_size:
                    yield counted(_to_batch(ids, texts))
                    ids, texts = [], []
        if ids:
            yield counted(_to_batch(ids, texts))
    finally:
        policy.close()


def _to_batch(ids: list[str], texts: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(ids, pa.string()), pa.array(texts, pa.large_string())], schema=BATCH_SCHEMA
    )
