"""Corpus I/O: stream records in, write records out, and a built-in corpus.

* :func:`read` — records as dicts ``{"id", "text", **other_fields}``;
* :func:`read_batches` — ``pyarrow.RecordBatch`` es of ``id`` (string), ``text`` (large_string);
* :func:`write` — JSONL (plain/gz/zst) or Parquet by suffix, atomically.

Modules: ``sources`` (what a source argument names), ``jsonl``/``parquet``/``textfile``
(one format each), ``builtin`` (``builtin:python-docs``), ``rejects`` (on_error, reject
entries, counts), ``reader`` (the iterators) and ``write``.
"""
from fastsynth.corpus.reader import BATCH_SCHEMA, CorpusReader, read, read_batches
from fastsynth.corpus.rejects import REASONS, ReadStats
from fastsynth.corpus.write import write

__all__ = ["read", "read_batches", "write", "CorpusReader", "ReadStats", "REASONS", "BATCH_SCHEMA"]
