"""Stage ``dedup``: near-duplicate documents (MinHash + LSH + exact Jaccard) removed.

Phases: ``Global("cluster")`` computes signatures and shingle sets of every part's
documents and clusters them (union-find over verified LSH pairs): the one step that
must see all parts. It writes ``dedup/global/clusters.parquet`` (one row per document,
in part order: ``part``, ``id``, ``keep``, ``cluster_id`` = the kept document's id,
``cluster_size``). ``Map("out")`` then filters each part by those flags; dropped
documents go to ``rejects/dedup/`` as ``near_duplicate`` naming the kept document.
(Without exact verification the signatures alone suffice —
:func:`fastsynth.dedup.cluster_signatures` — and could be a Map phase of their own.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import write_parquet
from fastsynth.errors import ConfigError
from fastsynth.run.config import check, option
from fastsynth.run.records import reject_table, write_rejects
from fastsynth.run.rundir import PartResult
from fastsynth.run.stage import Global, Map, Part, Stage, View, one_to_one


@dataclass(frozen=True)
class DedupConfig:
    threshold: float = option(0.8, "Jaccard threshold in (0, 1]")
    num_perm: int = option(128, "MinHash permutations")
    ngram: int = option(5, "shingle size in words (or characters)")
    shingle: Literal["word", "char"] = option("word", "word or character n-grams")
    verify: bool = option(True, "check each LSH candidate pair's exact Jaccard")
    keep: Literal["first", "score"] = option(
        "first", "which document of a cluster to keep: the first in input order, or the highest "
                 "score_field value")
    score_field: str | None = option(None, "numeric field for keep=score (e.g. gzip_ratio)")
    seed: int = option(1, "permutation seed")
    threads: int | None = option(None, "worker threads (none: all cores)")

    def __post_init__(self) -> None:
        check(0 < self.threshold <= 1, "dedup.threshold", f"must be in (0, 1], got {self.threshold}")
        check(self.num_perm >= 2, "dedup.num_perm", f"must be >= 2, got {self.num_perm}")
        check(self.ngram >= 1, "dedup.ngram", f"must be >= 1, got {self.ngram}")
        check(self.keep != "score" or bool(self.score_field), "dedup.keep",
              "= score needs dedup.score_field")


def scores_column(table: pa.Table, field: str, source: str) -> np.ndarray:
    """``table[field]`` as float64 (null -> NaN); ConfigError naming the field if it is
    absent or not numeric (never a silent fallback to keep=first)."""
    if field not in table.column_names:
        raise ConfigError(f"score field {field!r} is not in {source} (fields: "
                          f"{', '.join(c for c in table.column_names if c != 'text')})")
    col = table.column(field)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type)):
        raise ConfigError(f"score field {field!r} in {source} is {col.type}, not numeric")
    return col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def cluster(config: DedupConfig, view: View) -> PartResult:
    from fastsynth.dedup import dedup

    rels = view.files("score", "out") or view.files("ingest", "out")
    parts, ids, scores = [], [], []

    def batches():
        for rel in rels:
            f = pq.ParquetFile(view.path(rel))
            cols = ["id", "text"] + ([config.score_field] if config.keep == "score"
                                     and config.score_field in f.schema_arrow.names else [])
            t = f.read(columns=cols)
            if config.keep == "score":
                scores.append(scores_column(t, config.score_field, rel))
            parts.extend([rel.rsplit("/", 1)[-1].removesuffix(".parquet")] * t.num_rows)
            ids.extend(t.column("id").to_pylist())
            yield t.column("text").combine_chunks()

    texts = list(batches())
    score_arr = np.concatenate(scores) if scores else None
    result = dedup(iter(texts), threshold=config.threshold, num_perm=config.num_perm, ngram=config.ngram,
                   verify=config.verify, seed=config.seed, shingle=config.shingle, keep=config.keep,
                   scores=score_arr, threads=config.threads)
    id_arr = np.array(ids, dtype=object)
    table = pa.table({"part": parts, "id": ids, "keep": result.keep,
                      "cluster_id": id_arr[result.cluster_id].tolist() if len(ids) else [],
                      "cluster_size": result.cluster_size})
    write_parquet(view.global_dir("dedup") / "clusters.parquet", table)
    return PartResult(info={"documents": result.n_docs, "removed": result.n_removed,
                            "bands": result.bands, "rows": result.rows,
                            "cluster_size_histogram": {str(k): v for k, v in result.size_histogram().items()},
                            "pairs": {"candidates": result.candidate_pairs,
                                      "verified": result.verified_pairs, "matched": result.matched_pairs}})


def filter_part(config: DedupConfig, part: Part) -> PartResult:
    (src,) = part.input_paths()
    docs = pq.read_table(src)
    flags = pq.read_table(part.global_dir() / "clusters.parquet", filters=[("part", "=", part.id)])
    if flags.column("id").to_pylist() != docs.column("id").to_pylist():
        raise ConfigError(f"{part.global_dir() / 'clusters.parquet'} does not match part {part.id}; "
                          "re-run with --overwrite")
    keep = flags.column("keep")
    dropped = flags.filter(pa.compute.invert(keep))
    by_reason = write_rejects(part.rejects, reject_table(
        (i, "near_duplicate", f"kept {c} (cluster of {n})") for i, c, n in
        zip(dropped.column("id").to_pylist(), dropped.column("cluster_id").to_pylist(),
            dropped.column("cluster_size").to_pylist())))
    kept = docs.filter(keep)
    write_parquet(part.out, kept)
    return PartResult(n_in=docs.num_rows, n_out=kept.num_rows, n_rejected=dropped.num_rows,
                      rejected_by_reason=by_reason)


STAGE = Stage("dedup", DedupConfig,
              (Global("cluster", cluster), Map("out", filter_part, one_to_one("score"), counts=True)),
              needs=("score",), output="out", description="near-duplicate removal (MinHash + LSH)")
