"""Stage ``score``: gzip ratio and Gopher heuristics per document, then the quality filter.

Per part: the documents the filter keeps go to ``score/out/`` (``id``, ``text``,
``gzip_ratio``), every document's scores to ``score/scores/`` (the columns of
:func:`score_batch`), and each dropped document to ``rejects/score/`` with the first rule
it failed. ``fastsynth score`` is the same per-batch work over one input, written as
one ``scores.parquet`` (:mod:`fastsynth.run.score_job`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import write_parquet
from fastsynth.errors import ConfigError
from fastsynth.run.config import check, option
from fastsynth.run.records import reject_table, write_rejects
from fastsynth.run.rundir import PartResult, part_path
from fastsynth.run.stage import Map, Part, Stage, one_to_one


@dataclass(frozen=True)
class ScoreConfig:
    level: int = option(6, "zlib compression level of the gzip ratio")
    backend: Literal["zlib", "libdeflate"] = option(
        "zlib", "zlib (bit-identical to Python's zlib) or libdeflate (faster, sizes differ)")
    threads: int | None = option(None, "worker threads (none: all cores)")
    gzip_band: tuple[float, float] | None = option(
        (0.3, 0.5), "keep documents with LOW <= gzip_ratio <= HIGH (compressed/original; none: "
                    "no gzip rule)")
    filter: dict = option({}, "other quality-filter thresholds by name (QualityFilter fields; "
                              "TOML table)", flag=False)

    def __post_init__(self) -> None:
        from fastsynth.quality.compression import check_gzip_settings

        check_gzip_settings(self.level, self.backend)
        check(self.threads is None or self.threads >= 1, "score.threads", f"must be >= 1, got {self.threads}")
        self.quality_filter()  # unknown or bad thresholds fail here, once

    def quality_filter(self) -> Any:
        from fastsynth.quality import QualityFilter

        changes = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.filter.items()}
        if "gzip_band" in changes:
            raise ConfigError("score.filter: set gzip_band as score.gzip_band, not in the filter table")
        return QualityFilter().replace(gzip_band=self.gzip_band, **changes)


def scores_schema() -> pa.Schema:
    from fastsynth.quality import HEURISTIC_NAMES

    fields = [pa.field("id", pa.string()), pa.field("gzip_ratio", pa.float64())]
    fields += [pa.field(name, pa.float64()) for name in HEURISTIC_NAMES]
    fields += [pa.field("keep", pa.bool_()), pa.field("reasons", pa.list_(pa.string())),
               pa.field("first_reason", pa.string())]
    return pa.schema(fields)


def score_batch(batch: pa.RecordBatch | pa.Table, quality_filter: Any, *, level: int = 6,
                backend: str = "zlib", threads: int | None = None) -> pa.Table:
    """Scores of one batch with ``id`` and ``text`` columns: ``id``, ``gzip_ratio``
    (compressed/original, zlib format), every heuristic (float64), ``keep``, ``reasons``
    (failed rule names) and ``first_reason`` (None when kept)."""
    from fastsynth.quality import gzip_ratio, heuristics

    texts = batch.column("text")
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    metrics: dict[str, np.ndarray] = {"gzip_ratio": gzip_ratio(texts, level=level, threads=threads,
                                                               backend=backend)}
    metrics.update(heuristics(texts, threads=threads))
    result = quality_filter.apply(metrics)
    columns: dict[str, Any] = {"id": batch.column("id")}
    columns.update(metrics)
    columns["keep"] = result.keep
    columns["reasons"] = result.reasons_arrow()
    columns["first_reason"] = pa.array(result.first_reason().tolist(), type=pa.string())
    return pa.table(columns, schema=scores_schema())


def score_part(config: ScoreConfig, part: Part) -> PartResult:
    (src,) = part.input_paths()
    docs = pq.read_table(src, columns=["id", "text"])
    scores = score_batch(docs, config.quality_filter(), level=config.level, backend=config.backend,
                         threads=config.threads)
    keep = scores.column("keep").combine_chunks()
    write_parquet(part_path(part.root, part.stage, "scores", part.id), scores)
    kept = docs.filter(keep).append_column("gzip_ratio", scores.column("gzip_ratio").filter(keep))
    dropped = scores.filter(pa.compute.invert(keep))
    by_reason = write_rejects(part.rejects, reject_table(
        zip(dropped.column("id").to_pylist(), dropped.column("first_reason").to_pylist(),
            [",".join(r) for r in dropped.column("reasons").to_pylist()])))
    write_parquet(part.out, kept)
    return PartResult(n_in=docs.num_rows, n_out=kept.num_rows, n_rejected=dropped.num_rows,
                      rejected_by_reason=by_reason)


STAGE = Stage("score", ScoreConfig, (Map("out", score_part, one_to_one("ingest"), counts=True),),
              needs=("ingest",), output="out",
              description="gzip ratio + heuristics, then the quality filter")
