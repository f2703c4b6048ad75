"""Record files shared by the run's stages: documents and rejects (Parquet schemas)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import write_parquet

DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.large_string())])
# A dropped record: its id, a short machine reason, and a human detail (may be empty).
REJECT_SCHEMA = pa.schema([("id", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


def fixed_size_tables(tables: Iterable[pa.Table], size: int) -> Iterator[pa.Table]:
    """The rows of ``tables``, in order, regrouped into tables of exactly ``size`` rows (the
    last may be shorter): how a source read in arbitrary batches becomes parts."""
    buf: list[pa.Table] = []
    rows = 0
    for table in tables:
        while table.num_rows:
            take = min(table.num_rows, size - rows)
            buf.append(table.slice(0, take))
            rows += take
            table = table.slice(take)
            if rows == size:
                yield pa.concat_tables(buf)
                buf, rows = [], 0
    if buf:
        yield pa.concat_tables(buf)


def reject_table(rows: Iterable[tuple[str, str, str]]) -> pa.Table:
    ids, reasons, details = [], [], []
    for i, r, d in rows:
        ids.append(i)
        reasons.append(r)
        details.append(d)
    return pa.table({"id": ids, "reason": reasons, "detail": details}, schema=REJECT_SCHEMA)


def write_rejects(path: Path, table: pa.Table) -> dict[str, int]:
    """Write ``table`` (REJECT_SCHEMA) atomically; return counts by reason."""
    write_parquet(path, table)
    return dict(Counter(table.column("reason").to_pylist()))


def read_parts(root: str | Path, rels: list[str], columns: list[str] | None = None) -> pa.Table:
    """The listed part files of one stage, concatenated in the given order."""
    tables = [pq.read_table(Path(root) / r, columns=columns) for r in rels]
    if not tables:
        return DOC_SCHEMA.empty_table() if columns is None else DOC_SCHEMA.empty_table().select(columns)
    return pa.concat_tables(tables, promote_options="default")
