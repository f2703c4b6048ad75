"""``fastsynth score``: one corpus scored into one folder (the ``score`` stage's per-batch
work, :func:`fastsynth.run.stages.score.score_batch`, without a run directory).

Files written in ``out_dir`` (each atomically: temp file + rename). ``summary.json`` is
the commit record and is written last: a folder without it holds no finished result
(a stale one is removed when the job starts).

- ``scores.parquet``: ``id``, ``gzip_ratio``, every heuristic, ``keep`` (bool),
  ``reasons`` (list of failed rule names), ``first_reason``.
- ``kept.parquet`` (with ``write_kept``): ``id`` and ``text`` of the kept documents.
- ``rejects.jsonl`` (with ``on_error="skip"``): input records that could not be read,
  with their reason.
- ``summary.json`` / ``summary.md`` / ``summary.html``: counts (every input record is accounted for as
  kept, rejected by a rule, or rejected at input), rule failure counts, percentiles.
- ``gzip_ratio_hist.png``: histogram of gzip_ratio with the filter's band shaded.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth import corpus
from fastsynth._texts import resolve_threads
from fastsynth._version import __version__
from fastsynth.atomic import atomic_write_text, temp_path
from fastsynth.errors import DependencyError
from fastsynth.progress import progress
from fastsynth.quality import QualityFilter, zlib_version
from fastsynth.quality.compression import check_gzip_settings
from fastsynth.report import Document
from fastsynth.run.rundir import part_path
from fastsynth.run.stages.score import score_batch, scores_schema

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
SUMMARY_METRICS = ("gzip_ratio", "n_chars", "n_words", "mean_word_length", "frac_words_alpha",
                   "dup_line_frac", "top_2gram_char_frac", "dup_5gram_char_frac")
GZIP_CONVENTION = "gzip_ratio = len(zlib.compress(utf8, level)) / len(utf8): compressed/original, lower = more compressible"


class _AtomicParquet:
    """A ParquetWriter on the temp sibling of ``path``; renamed into place on commit()."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.tmp = temp_path(path)
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()

    def commit(self) -> None:
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


class _ScoreOutputs:
    """``scores.parquet`` and, when asked, ``kept.parquet``: written to temp siblings,
    closed, then renamed into place together (or both removed on failure)."""

    def __init__(self, out: Path, write_kept: bool):
        self.scores = _AtomicParquet(out / "scores.parquet", scores_schema())
        self.kept = _AtomicParquet(out / "kept.parquet", pa.schema([("id", pa.string()),
                                                                   ("text", pa.large_string())])) \
            if write_kept else None

    def _each(self) -> list[_AtomicParquet]:
        return [w for w in (self.scores, self.kept) if w is not None]

    def close(self) -> None:
        for w in self._each():
            w.close()

    def commit(self) -> None:
        for w in self._each():
            w.commit()

    def abort(self) -> None:
        for w in self._each():
            w.abort()


def _settings(source: Any, level: int, backend: str, threads: int | None, text_field: str,
              on_error: str, quality_filter: QualityFilter, executor: str) -> dict[str, Any]:
    return {"source": str(source), "level": level, "backend": backend, "threads": threads,
            "text_field": text_field, "on_error": on_error, "filter": _filter_settings(quality_filter),
            "executor": executor}


def _prepare(out_dir: str | Path, quality_filter: QualityFilter | None, level: int, backend: str,
             threads: int | None) -> tuple[QualityFilter, Path]:
    """Check the settings, create ``out_dir`` and remove a stale ``summary.json`` (the commit
    record of an earlier run): the set-up :func:`run_score` and :func:`run_score_parts` share."""
    check_gzip_settings(level, backend)
    resolve_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)
    return quality_filter or QualityFilter(), out


def run_score(source: Any, out_dir: str | Path, *, text_field: str = "text", id_field: str = "id",
              on_error: str = "raise", level: int = 6, backend: str = "zlib",
              threads: int | None = None, quality_filter: QualityFilter | None = None,
              batch_size: int = 4096, write_kept: bool = False, histogram: bool = True,
              show_progress: bool | None = None) -> dict[str, Any]:
    """Score ``source`` into ``out_dir``; returns the summary (also written as JSON)."""
    quality_filter, out = _prepare(out_dir, quality_filter, level, backend, threads)
    rejects_path = out / "rejects.jsonl"
    reader = corpus.read_batches(source, batch_size=batch_size, text_field=text_field, id_field=id_field,
                                 on_error=on_error, rejects=str(rejects_path) if on_error == "skip" else None)
    outs = _ScoreOutputs(out, write_kept)
    scores, kept = outs.scores, outs.kept
    started = time.perf_counter()
    n_scored = n_kept = n_bytes = 0
    try:
        with progress(desc="score", unit="doc", enabled=show_progress) as bar:
            for batch in reader:
                table = score_batch(batch, quality_filter, level=level, backend=backend, threads=threads)
                scores.write(table)
                keep = table.column("keep").combine_chunks()
                if kept is not None:
                    kept.write(pa.Table.from_batches([batch.select(["id", "text"]).filter(keep)]))
                n_scored += batch.num_rows
                n_kept += int(np.count_nonzero(keep.to_numpy(zero_copy_only=False)))
                n_bytes += int(pa.compute.sum(pa.compute.binary_length(batch.column("text"))).as_py() or 0)
                bar.update(batch.num_rows)
        outs.close()
        elapsed = time.perf_counter() - started
        summary = _summarize(scores.tmp, quality_filter, reader.stats.as_dict() if reader.stats is not None
                             else {}, n_scored, n_kept, n_bytes, elapsed)
    except BaseException:
        outs.abort()
        raise
    summary["settings"] = _settings(source, level, backend, threads, text_field, on_error, quality_filter,
                                    "local")
    outs.commit()
    return _finish(summary, out, quality_filter, write_kept=kept is not None, on_error=on_error,
                   histogram=histogram)


def _finish(summary: dict[str, Any], out: Path, quality_filter: QualityFilter, *, write_kept: bool,
            on_error: str, histogram: bool) -> dict[str, Any]:
    """List the files, draw the histogram, write the reports and, last, summary.json."""
    summary["files"] = {"scores": "scores.parquet", "summary": "summary.json"}
    if write_kept:
        summary["files"]["kept"] = "kept.parquet"
    if on_error == "skip":
        summary["files"]["rejects"] = "rejects.jsonl"
    summary["files"]["report"] = "summary.html"
    if histogram:
        summary["files"]["histogram"] = _histogram(out, quality_filter, summary)
    doc = summary_document(summary, out)
    atomic_write_text(out / "summary.md", doc.markdown())
    atomic_write_text(out / "summary.html", doc.html())
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")
    return summary


def run_score_parts(source: Any, out_dir: str | Path, executor: Any, *, text_field: str = "text",
                    id_field: str = "id", on_error: str = "raise", level: int = 6, backend: str = "zlib",
                    threads: int | None = None, quality_filter: QualityFilter | None = None,
                    batch_size: int = 4096, write_kept: bool = False,
                    histogram: bool = True) -> dict[str, Any]:
    """:func:`run_score` with the scoring done as the ``score`` stage's parts on
    ``executor`` (e.g. a :class:`~fastsynth.run.ray_executor.RayExecutor`): the input is
    read into parts of ``batch_size`` documents in ``OUT/.fastsynth-work``
    (:mod:`fastsynth.run.command_parts`; resumable, removed after success) and the same
    files as :func:`run_score`'s are assembled from the parts, in input order."""
    from fastsynth.run import command_parts as cp
    from fastsynth.run.stages.score import STAGE, ScoreConfig

    quality_filter, out = _prepare(out_dir, quality_filter, level, backend, threads)
    started = time.perf_counter()
    changes = {k: v for k, v in asdict(quality_filter).items() if k != "gzip_band"}
    read = cp.ReadConfig(source=str(source), text_field=text_field, id_field=id_field, on_error=on_error,
                         part_docs=batch_size, rejects=str(out / "rejects.jsonl") if on_error == "skip" else None)
    score_cfg = ScoreConfig(level=level, backend=backend, threads=threads, gzip_band=quality_filter.gzip_band,
                            filter=changes)
    identity = {"command": "score", "read": {**asdict(read), **cp.source_identity(str(source))},
                "score": {"level": level, "backend": backend,
                          "filter": json.loads(json.dumps(_filter_settings(quality_filter), default=_json_default))}}
    work = cp.work_dir_for(out, out_is_dir=True)
    rd = cp.run_in_work_dir(work, identity, [(cp.READ, read), (STAGE, score_cfg)], executor)
    info = rd.parts("ingest", "out")["global"]["info"]
    outs = _ScoreOutputs(out, write_kept)
    scores, kept = outs.scores, outs.kept
    n_scored = n_kept = 0
    try:
        for pid in rd.parts("score", "out"):  # each part also wrote score/scores/<part>.parquet
            table = pq.read_table(part_path(work, "score", "scores", pid)).cast(scores_schema())
            scores.write(table)
            n_scored += table.num_rows
        if kept is not None:
            for path in cp.part_files(rd, "score", "out"):
                kept.write(pq.read_table(path, columns=["id", "text"]).cast(kept.writer.schema))
        outs.close()
        n_kept = int(rd.manifest["stages"]["score"]["counts"]["out"])
        summary = _summarize(scores.tmp, quality_filter, info["stats"], n_scored, n_kept, info["text_bytes"],
                             time.perf_counter() - started)
    except BaseException:
        outs.abort()
        raise
    summary["settings"] = _settings(source, level, backend, threads, text_field, on_error, quality_filter,
                                    getattr(executor, "name", type(executor).__name__))
    outs.commit()
    summary = _finish(summary, out, quality_filter, write_kept=write_kept, on_error=on_error, histogram=histogram)
    cp.remove_work_dir(work)
    return summary


def _filter_settings(f: QualityFilter) -> dict[str, Any]:
    return {k: v for k, v in asdict(f).items()}


def _summarize(scores_path: Path, quality_filter: QualityFilter, stats: dict[str, Any], n_scored: int,
               n_kept: int, n_bytes: int, elapsed: float) -> dict[str, Any]:
    table = pq.read_table(scores_path, columns=list(SUMMARY_METRICS) + ["reasons", "first_reason"])
    rules = quality_filter.rules()
    reason_lists = table.column("reasons").combine_chunks()
    flat = pa.compute.value_counts(reason_lists.flatten()).to_pylist() if n_scored else []
    fails = {d["values"]: d["counts"] for d in flat}
    first = pa.compute.value_counts(table.column("first_reason").combine_chunks()).to_pylist() if n_scored else []
    first_counts = {d["values"]: d["counts"] for d in first if d["values"]}
    rejected_input = int(stats.get("rejected", 0))
    percentiles = {}
    for name in SUMMARY_METRICS:
        values = table.column(name).to_numpy()
        values = values[np.isfinite(values)]
        percentiles[name] = {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES} if values.size else {}
    return {
        "fastsynth_version": __version__,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "zlib": zlib_version()},
        "gzip_ratio_convention": GZIP_CONVENTION,
        "counts": {
            "input_records": n_scored + rejected_input,
            "rejected_at_input": rejected_input,
            "rejected_at_input_by_reason": dict(stats.get("rejected_by_reason", {})),
            "scored": n_scored,
            "kept": n_kept,
            "rejected_by_filter": n_scored - n_kept,
        },
        "rejected_by_first_rule": {r.name: int(first_counts.get(r.name, 0)) for r in rules},
        "rule_failures": {r.name: {"rule": r.describe(), "failed": int(fails.get(r.name, 0))} for r in rules},
        "percentiles": percentiles,
        "throughput": {"seconds": elapsed, "docs_per_s": n_scored / elapsed if elapsed else None,
                       "mb_per_s": n_bytes / 1e6 / elapsed if elapsed else None, "text_bytes": n_bytes},
    }


def _histogram(out: Path, quality_filter: QualityFilter, summary: dict[str, Any]) -> str | None:
    from fastsynth.report.histogram import histogram_png

    values = pq.read_table(out / "scores.parquet", columns=["gzip_ratio"]).column("gzip_ratio").to_numpy()
    c = summary["counts"]
    try:
        histogram_png(values, out / "gzip_ratio_hist.png",
                      title=f"gzip ratio of {c['scored']:,} documents ({c['kept']:,} kept)",
                      xlabel="gzip ratio = compressed / original (zlib), lower = more compressible",
                      band=quality_filter.gzip_band, band_label="filter band")
    except DependencyError as e:
        summary["histogram_skipped"] = str(e)
        return None
    return "gzip_ratio_hist.png"


def summary_document(summary: dict[str, Any], out: Path | None = None) -> Document:
    """The score summary as a report :class:`Document` (figure included when ``out`` holds it)."""
    c = summary["counts"]
    doc = Document("fastsynth score summary")
    doc.p(f"Source: `{summary['settings']['source']}` · fastsynth {summary['fastsynth_version']} · "
          f"zlib {summary['machine']['zlib']} · {summary['machine']['cpus']} CPUs")
    doc.p(f"Convention: {summary['gzip_ratio_convention']}.")
    doc.h("Counts")
    doc.table(["input records", "rejected at input", "scored", "kept", "rejected by filter"],
              [[f"{c['input_records']:,}", f"{c['rejected_at_input']:,}", f"{c['scored']:,}",
                f"{c['kept']:,}", f"{c['rejected_by_filter']:,}"]])
    if c["rejected_at_input_by_reason"]:
        doc.p("Rejected at input (see rejects.jsonl): " + ", ".join(
            f"{k}: {v:,}" for k, v in sorted(c["rejected_at_input_by_reason"].items())))
    doc.h("Filter rules")
    doc.table(["rule", "condition", "failed (any)", "rejected (first failed rule)"],
              [[name, f"`{info['rule']}`", f"{info['failed']:,}",
                f"{summary['rejected_by_first_rule'].get(name, 0):,}"]
               for name, info in summary["rule_failures"].items()])
    doc.h("Percentiles")
    doc.table(["metric"] + [f"p{p}" for p in PERCENTILES],
              [[name] + [f"{pct[f'p{p}']:.4g}" if pct else "–" for p in PERCENTILES]
               for name, pct in summary["percentiles"].items()])
    t = summary["throughput"]
    if t["docs_per_s"]:
        doc.p(f"Throughput: {t['docs_per_s']:,.0f} docs/s, {t['mb_per_s']:.1f} MB/s "
              f"({t['seconds']:.2f} s, including reading and writing).")
    if summary.get("histogram_skipped"):
        doc.p(f"Histogram skipped: {summary['histogram_skipped']}")
    elif summary["files"].get("histogram") and out is not None and (out / summary["files"]["histogram"]).exists():
        doc.figure(out / summary["files"]["histogram"], "gzip ratio histogram")
    return doc


def render_markdown(summary: dict[str, Any], out: Path | None = None) -> str:
    return summary_document(summary, out).markdown()


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    return str(o)


