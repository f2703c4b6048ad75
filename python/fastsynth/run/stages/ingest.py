"""Stage ``ingest``: read the source corpus once into parts of ``part_docs`` documents.

Every later stage reads parts, never the source, so a run does not depend on the source
staying where it was. Records the reader rejects (``on_error="skip"``) go to
``rejects/ingest/`` with the reader's reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from fastsynth.atomic import write_parquet
from fastsynth.run.config import check, option
from fastsynth.run.records import DOC_SCHEMA, fixed_size_tables, reject_table, write_rejects
from fastsynth.run.rundir import PartResult, part_path, rejects_path
from fastsynth.run.stage import Global, Stage, View


@dataclass(frozen=True)
class IngestConfig:
    source: str = option("builtin:python-docs", "corpus: a .jsonl[.gz|.zst]/.parquet file, a folder, "
                                                "a glob, or builtin:python-docs")
    text_field: str = option("text", "input field holding the text")
    id_field: str = option("id", "input field holding the document id")
    on_error: Literal["raise", "skip"] = option("skip", "bad input records: stop (raise) or reject "
                                                        "them with their reason (skip)")
    limit: int | None = option(None, "use only the first N records (none: all)")
    part_docs: int = option(1000, "documents per part (the unit of resumable work)")

    def __post_init__(self) -> None:
        check(self.part_docs >= 1, "ingest.part_docs", f"must be >= 1, got {self.part_docs}")
        check(self.limit is None or self.limit >= 0, "ingest.limit", f"must be >= 0, got {self.limit}")


def read(config: IngestConfig, view: View) -> PartResult:
    from fastsynth.corpus import read_batches

    rejected: list[dict] = []
    reader = read_batches(config.source, batch_size=config.part_docs, text_field=config.text_field,
                          id_field=config.id_field, on_error=config.on_error, rejects=rejected)
    parts: list[str] = []
    n_out = 0

    def limited(batches):
        seen = 0
        for table in batches:
            if config.limit is not None:
                table = table.slice(0, max(0, config.limit - seen))
            seen += table.num_rows
            yield table
            if config.limit is not None and seen >= config.limit:
                break

    with reader:
        batches = (pa.Table.from_batches([b]).select(["id", "text"]).cast(DOC_SCHEMA) for b in reader)
        for table in fixed_size_tables(limited(batches), config.part_docs):
            pid = f"{len(parts):05d}"
            write_parquet(part_path(view.root, "ingest", "out", pid), table)
            parts.append(pid)
            n_out += table.num_rows
        stats = reader.stats
    by_reason = write_rejects(rejects_path(view.root, "ingest", "read"), reject_table(
        (f"{r.get('source')}:{r.get('line') or r.get('row')}", r["reason"], r.get("detail") or "")
        for r in rejected))
    n_rej = len(rejected)
    return PartResult(n_in=n_out + n_rej, n_out=n_out, n_rejected=n_rej, rejected_by_reason=by_reason,
                      info={"parts": parts, "source": config.source,
                            "blank_lines": stats.blank_lines, "files": stats.files})


STAGE = Stage("ingest", IngestConfig, (Global("out", read, counts=True),), output="out",
              description="read the source corpus into parts")
