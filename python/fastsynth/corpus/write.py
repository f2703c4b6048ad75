"""``write``: stream records to JSONL or Parquet, atomically.

The format follows the suffix: ``.jsonl``/``.ndjson`` (UTF-8, one object per line,
``ensure_ascii=False``; dates and times as ISO 8601 strings, decimals as strings),
``.jsonl.gz`` (gzip, mtime 0 so equal input gives equal bytes), ``.jsonl.zst``
(Zstandard via pyarrow) or ``.parquet`` (written in row chunks with
``pyarrow.parquet.ParquetWriter``). Output goes to ``.<name>.tmp-<pid>`` in the same folder
(:func:`fastsynth.atomic.temp_path`), is flushed to disk and renamed over ``path`` only
once complete; on any exception (disk full, a bad record, Ctrl-C) the temporary file is
removed and ``path`` is left as it was. A process killed outright (SIGKILL, power loss)
leaves only its temporary file; the next ``write`` to the same ``path`` removes such
files whose process is gone.

JSON has no NaN or infinity: non-finite floats are written as ``null`` (as JavaScript's
``JSON.stringify`` and pandas do), so every line is valid JSON. A value that cannot be
written (a lone surrogate in a string, an object json cannot encode, bytes) raises
``InputError`` naming the record (0-based position in the input) and the field.

Parquet schema: taken from the first input (a Table's or batch's schema, or inferred from
the first ``chunk_rows`` dicts). Later chunks are cast to it; a later dict with a field
the schema lacks raises ``InputError`` rather than silently dropping the field. A field
whose values have different types (an int in one record, a string in another) raises
``InputError`` naming the field and the first record that differs: a Parquet column has
one type (write JSONL for such data). While a field has only nulls, dict records are held
(up to ``HOLD_ROWS``, 65,536) before the schema is fixed, so a sparse field takes the type
of its first value; a field still all-null after that gets Arrow's ``null`` type, and
values in it later raise the same error.
"""
from __future__ import annotations

import datetime
import decimal
import gzip
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import TMP_MARK, atomic_path
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
    if path.is_dir():  # checked now: the rename would fail only after all the work
        raise ConfigError(f"path {str(path)!r} is a directory")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    sweep_dead_temps(path)
    with atomic_path(path) as tmp:  # synced, renamed into place; removed on any failure
        if fmt == "parquet":
            n = _write_parquet(_chunks(records, chunk_rows), tmp, path)
        else:
            n = _write_jsonl(_chunks(records, chunk_rows), tmp, fmt, path)
    return n


def sweep_dead_temps(path: str | os.PathLike) -> list[Path]:
    """Remove ``path``'s temporary siblings (``.<name>.tmp-<pid>``, also the older
    ``<name>.tmp-<pid>``) whose writing process no longer exists; return them. Files of a
    live process (a concurrent writer) are left alone."""
    path = Path(path)
    gone = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return gone
    for p in entries:
        name = p.name
        for prefix in (f".{path.name}{TMP_MARK}", f"{path.name}{TMP_MARK}"):
            pid = name[len(prefix):] if name.startswith(prefix) else ""
            if pid.isdigit() and not process_alive(int(pid)):
                try:
                    p.unlink()
                    gone.append(p)
                except OSError:
                    pass
    return gone


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (other than this one: our own leftovers are dead)."""
    if pid == os.getpid():
        return False  # our own leftover from an earlier, failed attempt
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


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


def _write_jsonl(chunks: Iterable[Any], tmp: Path, fmt: str, path: Path) -> int:
    n = 0
    if fmt == "jsonl.zst":
        raw: Any = pa.output_stream(str(tmp), compression="zstd")
        sink: Any = raw
    else:
        raw = open(tmp, "wb")
        sink = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if fmt == "jsonl.gz" else raw
    with raw:
        try:
            for chunk in chunks:
                rows = chunk if isinstance(chunk, list) else chunk.to_pylist()
                text = "".join(_json_line(r, n + i, path) for i, r in enumerate(rows))
                try:
                    data = text.encode("utf-8")
                except UnicodeEncodeError:
                    for i, r in enumerate(rows):  # name the record (rare path)
                        try:
                            _json_line(r, n + i, path).encode("utf-8")
                        except UnicodeEncodeError as e:
                            raise _record_error(r, n + i, path, "a string holds a lone "
                                                f"surrogate ({e.reason})") from None
                    raise
                sink.write(data)
                n += len(rows)
        finally:
            if sink is not raw:
                sink.close()
    return n


def _json_line(row: dict, index: int, path: Path) -> str:
    try:
        return json.dumps(row, ensure_ascii=False, allow_nan=False, default=_json_value) + "\n"
    except ValueError:  # NaN or infinity somewhere: JSON has neither (module docstring)
        pass
    except (TypeError, RecursionError) as e:
        raise _record_error(row, index, path, str(e)) from None
    return json.dumps(_finite(row), ensure_ascii=False, allow_nan=False,
                      default=_json_value) + "\n"


def _finite(v: Any) -> Any:
    """``v`` with every non-finite float (at any depth) replaced by ``None``."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if hasattr(v, "item") and hasattr(v, "dtype"):  # numpy scalars
        return _finite(v.item())
    return v


def _record_error(row: Any, index: int, path: Path, why: str) -> InputError:
    """An InputError naming record ``index`` and, where one can be singled out, its field."""
    field = None
    if isinstance(row, dict):
        for k, v in row.items():
            try:
                json.dumps({k: _finite(v)}, ensure_ascii=False, default=_json_value).encode("utf-8")
            except (TypeError, ValueError, RecursionError):
                field = k
                break
    ident = row.get("id") if isinstance(row, dict) else None
    who = f"record {index}" + (f" (id {str(ident)[:80]!r})" if isinstance(ident, str) else "")
    where = f", field {field!r}" if field is not None else ""
    return InputError(f"{who}{where} cannot be written as JSON: {why}", source=str(path))


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
    held: list[pa.Table] = []  # dict chunks held while a column is still all-null
    held_rows = 0
    try:
        for chunk in chunks:
            if isinstance(chunk, list):
                table = _table_from_dicts(chunk, n + held_rows, path)
                if writer is None:
                    # The schema is fixed by the first write: while some column has only
                    # nulls (type unknown), hold chunks (up to HOLD_ROWS) so a later value
                    # gives the column its type instead of failing against "null".
                    held.append(table)
                    held_rows += table.num_rows
                    if _has_null_column(held) and held_rows < HOLD_ROWS:
                        continue
                    table = _combine(held, n, path)
                    held, held_rows = [], 0
            elif isinstance(chunk, pa.RecordBatch):
                table = pa.Table.from_batches([chunk])
            else:
                table = chunk
            if held:  # a Table/RecordBatch after held dict chunks: write those first
                first = _combine(held, n, path)
                held, held_rows = [], 0
                schema = first.schema
                writer = pq.ParquetWriter(str(tmp), schema)
                writer.write_table(first)
                n += first.num_rows
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(str(tmp), schema)
            elif table.schema != schema:
                table = _conform(table, schema, path, n)
            writer.write_table(table)
            n += table.num_rows
        if held:
            table = _combine(held, n, path)
            writer = pq.ParquetWriter(str(tmp), table.schema)
            writer.write_table(table)
            n += table.num_rows
        if writer is None:  # no records: an empty file with an empty schema
            writer = pq.ParquetWriter(str(tmp), pa.schema([]))
    finally:
        if writer is not None:
            writer.close()
    return n


#: Most dict records held before the Parquet schema is fixed with a column still all-null.
HOLD_ROWS = 65_536


def _has_null_column(tables: list[pa.Table]) -> bool:
    typed = {f.name for t in tables for f in t.schema if not pa.types.is_null(f.type)}
    return any(f.name not in typed for t in tables for f in t.schema)


def _combine(tables: list[pa.Table], row0: int, path: Path) -> pa.Table:
    """One table from held dict chunks: all-null columns take the type of their values,
    columns missing from a chunk are null there; differing types name the field."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    seen: dict[str, pa.DataType] = {}
    start = row0
    for t in tables:
        for f in t.schema:
            if pa.types.is_null(f.type):
                continue
            if f.name in seen and seen[f.name] != f.type:
                raise InputError(f"field {f.name!r} has mixed types: records from {start} on "
                                 f"hold {f.type} where earlier records hold {seen[f.name]}; a "
                                 "Parquet column has one type (give the field one type, or "
                                 "write JSONL)", source=str(path))
            seen.setdefault(f.name, f.type)
        start += t.num_rows
    return pa.concat_tables(tables, promote_options="permissive")


def _table_from_dicts(rows: list[dict], row0: int, path: Path) -> pa.Table:
    """Columns = the union of the rows' keys in first-seen order; absent keys are null.

    (``pa.Table.from_pylist`` takes its columns from the first row only and silently
    drops keys that appear later.) ``row0`` is the first row's position in the input,
    for errors.
    """
    keys: dict[str, None] = {}
    for i, r in enumerate(rows):
        for k in r:
            if k not in keys:
                if not isinstance(k, str):  # a Parquet column is named by a string
                    raise InputError(f"record {row0 + i}: field name {k!r} is a "
                                     f"{type(k).__name__}, not a string", source=str(path))
                keys[k] = None
    cols = {}
    for k in keys:
        values = [r.get(k) for r in rows]
        try:
            cols[k] = pa.array(values)
        except (pa.ArrowException, OverflowError, UnicodeEncodeError, TypeError,
                ValueError) as e:
            raise _column_error(k, values, row0, path, e) from None
    return pa.Table.from_pydict(cols)


def _column_error(name: str, values: list[Any], row0: int, path: Path,
                  error: BaseException) -> InputError:
    """Name the first record of column ``name`` that Arrow cannot put in one column."""
    ref = None
    for i, v in enumerate(values):
        if v is None:
            continue
        try:
            single = pa.array([v])
        except (pa.ArrowException, OverflowError, UnicodeEncodeError, TypeError,
                ValueError) as e:
            return InputError(f"field {name!r} of record {row0 + i}: {type(v).__name__} value "
                              f"cannot be stored in Parquet: {e}", source=str(path))
        if ref is None:
            ref = single.type
            continue
        try:
            pa.array([v], type=ref)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            return InputError(f"field {name!r} has mixed types: record {row0 + i} holds "
                              f"{single.type} ({v!r:.60}) where earlier records hold {ref}; "
                              "a Parquet column has one type (give the field one type, or "
                              "write JSONL)", source=str(path))
    return InputError(f"field {name!r} cannot be stored in Parquet: {error}", source=str(path))


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
