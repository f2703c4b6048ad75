"""``write``: stream records to JSONL or Parquet, atomically.

The format follows the suffix: ``.jsonl``/``.ndjson`` (UTF-8, one object per line,
``ensure_ascii=False``; dates and times as ISO 8601 strings, decimals as strings),
``.jsonl.gz`` (gzip, mtime 0 so equal input gives equal bytes), ``.jsonl.zst``
(Zstandard via pyarrow) or ``.parquet`` (written in row chunks with
``pyarrow.parquet.ParquetWriter``). Output goes to ``<path>.tmp-<pid>`` in the same folder
and is renamed over ``path`` only once complete; on any exception the temporary file is
removed and ``path`` is left as it was.

Parquet schema: taken from the first input (a Table's or batch's schema, or inferred from
the first ``chunk_rows`` dicts). Later chunks are cast to it; a later dict with a field
the schema lacks raises ``InputError`` rather than silently dropping the field.
"""
from __future__ import annotations

import datetime
import decimal
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.errors import ConfigError, InputError

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonl.gz": "jsonl.gz",
            ".jsonl.zst": "jsonl.zst", ".parquet": "parquet"}
# Rows per Parquet row group when the input is dicts: ~ a few MB of typical documents,
# large enough for good compression, small enough to keep memory flat.
_CHUNK_ROWS = 4096


def write(records: Any, path: str | os.PathLike, *, chunk_rows: int = _CHUNK_ROWS) -> int:
    """Write ``records`` to ``path`` and return the number of records written.

    ``records``: an iterable of dicts, a ``pyarrow.Table``, a ``pyarrow.RecordBatch`` or an
    iterable of ``RecordBatch`` es (e.g. a :func:`read_batches` reader). Consumed once,
    streaming: at most ``chunk_rows`` dicts (or one batch) are held at a time.
    """
    path = Path(path)
    fmt = _format(path)
    if not path.parent.is_dir():
        raise ConfigError(f"path {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        if fmt == "parquet":
            n = _write_parquet(_chunks(records, chunk_rows), tmp, path)
        else:
            n = _write_jsonl(_chunks(records, chunk_rows), tmp, fmt)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return n


def _format(path: Path) -> str:
    low = path.name.lower()
    for suffix in sorted(_FORMATS, key=len, reverse=True):
        if low.endswith(suffix):
            return _FORMATS[suffix]
    raise ConfigError(
        f"path {str(path)!r}: unknown output format; use one of {', '.join(_FORMATS)}"
    )


def _chunks(records: Any, chunk_rows: int) -> Iterator[pa.RecordBatch | pa.Table | list[dict]]:
    """Normalise the input into Arrow tables/batches or lists of at most ``chunk_rows`` dicts."""
    if isinstance(records, (pa.Table, pa.RecordBatch)):
        yield records
        return
    if isinstance(records, (str, bytes, dict)) or not isinstance(records, Iterable):
        raise ConfigError(
            f"records must be an iterable of dicts, a pyarrow Table or RecordBatches, "
            f"got {type(records).__name__}"
        )
    it = iter(records)
    pending: list[dict] = []
    for item in it:
        if isinstance(item, (pa.RecordBatch, pa.Table)):
            if pending:
                yield pending
                pending = []
            yield item
        elif isinstance(item, dict):
            pending.append(item)
            if len(pending) >= chunk_rows:
                yield pending
                pending = []
        else:
            raise InputError(f"records must hold dicts or RecordBatches, got {type(item).__name__}")
    if pending:
        yield pending


def _write_jsonl(chunks: Iterable[Any], tmp: Path, fmt: str) -> int:
    n = 0
    if fmt == "jsonl.zst":
        raw: Any = pa.output_stream(str(tmp), compression="zstd")
        sink = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    else:
        raw = open(tmp, "wb")
        inner = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if fmt == "jsonl.gz" else raw
        sink = io.TextIOWrapper(inner, encoding="utf-8", newline="\n")
    with raw:
        with sink:
            for chunk in chunks:
                rows = chunk if isinstance(chunk, list) else chunk.to_pylist()
                sink.write("".join(json.dumps(r, ensure_ascii=False, default=_json_value) + "\n"
                                   for r in rows))
                n += len(rows)
    return n


def _json_value(v: Any) -> Any:
    """JSON for values Arrow hands back from Parquet that json cannot encode itself."""
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (decimal.Decimal, datetime.timedelta)):
        return str(v)
    if hasattr(v, "item") and hasattr(v, "dtype"):  # numpy scalars
        return v.item()
    raise TypeError(f"cannot write a {type(v).__name__} value as JSON")


def _write_parquet(chunks: Iterable[Any], tmp: Path, path: Path) -> int:
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    n = 0
    try:
        for chunk in chunks:
            if isinstance(chunk, list):
                table = _table_from_dicts(chunk)
            elif isinstance(chunk, pa.RecordBatch):
                table = pa.Table.from_batches([chunk])
            else:
                table = chunk
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(str(tmp), schema)
            elif table.schema != schema:
                table = _conform(table, schema, path, n)
            writer.write_table(table)
            n += table.num_rows
        if writer is None:  # no records: an empty file with an empty schema
            writer = pq.ParquetWriter(str(tmp), pa.schema([]))
    finally:
        if writer is not None:
            writer.close()
    return n


def _table_from_dicts(rows: list[dict]) -> pa.Table:
    """Columns = the union of the rows' keys in first-seen order; absent keys are null.

    (``pa.Table.from_pylist`` takes its columns from the first row only and silently
    drops keys that appear later.)
    """
    keys: dict[str, None] = {}
    for r in rows:
        for k in r:
            keys.setdefault(k, None)
    return pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in keys})


def _conform(table: pa.Table, schema: pa.Schema, path: Path, row0: int) -> pa.Table:
    extra = [f for f in table.schema.names if f not in schema.names]
    if extra:
        raise InputError(f"fields {extra} first appear after the schema was fixed by the first "
                         f"chunk ({schema.names})", source=str(path), row=row0)
    cols = []
    for field in schema:
        if field.name in table.schema.names:
            col = table.column(field.name)
            try:
                cols.append(col.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise InputError(f"field {field.name!r} has type {col.type}, schema says "
                                 f"{field.type}: {e}", source=str(path), row=row0) from e
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)
