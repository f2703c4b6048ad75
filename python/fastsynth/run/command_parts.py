"""A stage command's hidden work directory: the input read into parts, then a stage's
phases run there on an executor (``fastsynth score|dedup ... --executor ray``).

The stage commands write plain files (``OUT/scores.parquet``, a deduplicated corpus),
not run directories. To run their work as parts on another executor they keep a run
directory of their own beside the output (:func:`work_dir_for`, docs/scale.md
"Stage commands on Ray"): the input is read once, on the driver, into parts of
``part_docs`` documents (``ingest/out/<part>.parquet``, with the reader's rejects written
where the command always wrote them), the stage runs over those parts through the
executor, the command assembles its usual output files from the stage's, and the work
directory is removed. A killed command leaves it behind; running the same command again
resumes from its finished parts (another input or other settings start it afresh).
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fastsynth.atomic import write_parquet
from fastsynth.errors import ConfigError
from fastsynth.run.records import DOC_SCHEMA, fixed_size_tables
from fastsynth.run.rundir import PartResult, RunDir, part_path
from fastsynth.run.stage import Global, Stage, View

#: Name part of a work directory (hidden; ``fastsynth`` in it says whose it is).
WORK_SUFFIX = ".fastsynth-work"


def work_dir_for(out: str | os.PathLike, *, out_is_dir: bool) -> Path:
    """Where a command writing ``out`` keeps its parts: ``OUT/.fastsynth-work`` when OUT is
    the command's folder, else ``.<name>.fastsynth-work`` beside the file OUT."""
    out = Path(out)
    if out_is_dir:
        return out / WORK_SUFFIX
    return out.parent / f".{out.name}{WORK_SUFFIX}"


@dataclass(frozen=True)
class ReadConfig:
    """How the driver reads the command's input into parts. ``rejects``: the JSONL file
    the reader writes bad records to (skip mode). ``scores_file``: a ``.npy`` of one float64
    per readable record, in input order, added to the parts as column ``score_field``
    (dedup ``--keep score``)."""

    source: str
    text_field: str = "text"
    id_field: str = "id"
    on_error: str = "raise"
    part_docs: int = 4096
    rejects: str | None = None
    score_field: str | None = None
    scores_file: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.part_docs, bool) or not isinstance(self.part_docs, int) or self.part_docs < 1:
            raise ConfigError(f"part size (--batch-size) must be a positive integer, got {self.part_docs!r}")
        if self.score_field in ("id", "text"):
            raise ConfigError(f"--score-field {self.score_field!r}: must be a numeric field other than id/text")


def read_into_parts(config: ReadConfig, view: View) -> PartResult:
    """Global step ``ingest/out``: parts ``00000``, ``00001``, ... of exactly
    ``part_docs`` documents (the last may be shorter), ``id`` string and ``text``
    large_string (plus the score column). ``info``: ``parts``, the reader's ``stats``
    (:meth:`ReadStats.as_dict`) and ``text_bytes`` (UTF-8 bytes of the texts read)."""
    from fastsynth.corpus import read_batches

    scores = np.load(config.scores_file) if config.scores_file else None
    reader = read_batches(config.source, batch_size=config.part_docs, text_field=config.text_field,
                          id_field=config.id_field, on_error=config.on_error, rejects=config.rejects)
    parts: list[str] = []
    n_out = n_bytes = 0

    def counted(batches):
        nonlocal n_bytes
        for batch in batches:
            table = pa.Table.from_batches([batch]).select(["id", "text"]).cast(DOC_SCHEMA)
            n_bytes += int(pa.compute.sum(pa.compute.binary_length(table.column("text"))).as_py() or 0)
            yield table

    with reader:
        for table in fixed_size_tables(counted(reader), config.part_docs):
            n_out += table.num_rows
            if scores is not None:
                table = table.append_column(config.score_field,
                                            pa.array(scores[n_out - table.num_rows:n_out], pa.float64()))
            write_parquet(part_path(view.root, "ingest", "out", f"{len(parts):05d}"), table)
            parts.append(f"{len(parts):05d}")
    stats = reader.stats.as_dict()
    if scores is not None and scores.size != n_out:
        raise ConfigError(f"{config.scores_file}: {scores.size} scores for {n_out} records; "
                          "the input changed while it was read")
    n_rej = int(stats.get("rejected", 0))
    return PartResult(n_in=n_out + n_rej, n_out=n_out, n_rejected=n_rej,
                      rejected_by_reason=dict(stats.get("rejected_by_reason", {})),
                      info={"parts": parts, "stats": stats, "text_bytes": n_bytes})


READ = Stage("ingest", ReadConfig, (Global("out", read_into_parts, counts=True),), output="out",
             description="the command's input read into parts")


def source_identity(source: str) -> dict[str, Any]:
    """What says an input file is unchanged between a killed command and its rerun: its
    size and modification time (a folder or glob: its resolved files')."""
    from fastsynth.corpus.sources import resolve

    try:
        files = resolve(source)
    except Exception:  # noqa: BLE001 - an unreadable source is reported by the read step itself
        return {"source": source}
    out = []
    for f in files:
        p = getattr(f, "path", None)
        try:
            st = os.stat(p) if p else None
        except OSError:
            st = None
        out.append([str(p or getattr(f, "display", f)), st.st_size if st else None,
                    st.st_mtime_ns if st else None])
    return {"source": source, "files": out}


def open_work_dir(work: Path, identity: dict[str, Any]) -> RunDir:
    """The work directory for ``identity`` (plain JSON): the one a killed run of the same
    command left (it resumes), else a fresh one (a leftover of other settings, another
    input or another fastsynth is removed first)."""
    try:
        return RunDir(work, identity)
    except ConfigError:
        shutil.rmtree(work)
        return RunDir(work, identity)


def run_in_work_dir(work: Path, identity: dict[str, Any], stages: list[tuple[Stage, Any]],
                    executor: Any) -> RunDir:
    """Run (or resume) ``stages`` in ``work`` on ``executor``; stops a local Ray the
    executor started (its temp dir is inside ``work``) before returning."""
    from fastsynth.run.executor import run_stage

    rd = open_work_dir(work, identity)
    resumed = [s.name for s, _ in stages if rd.manifest["stages"].get(s.name, {}).get("phases")]
    if resumed:
        print(f"resuming the unfinished run in {work} (stages {', '.join(resumed)} have finished parts)",
              file=sys.stderr)
    try:
        for stage, config in stages:
            run_stage(rd, stage, config, executor)
    finally:
        shutdown = getattr(executor, "shutdown", None)
        if shutdown is not None:
            shutdown()
    return rd


def remove_work_dir(work: Path) -> None:
    """Sweep the work directory once the command's own files are in place."""
    shutil.rmtree(work, ignore_errors=True)


def part_files(rd: RunDir, stage: str, phase: str) -> list[Path]:
    """The finished part files of ``stage``'s ``phase`` in part order (a Global step that
    wrote record parts lists them in its info)."""
    from fastsynth.run.executor import view_of

    view = view_of(rd)
    return [view.path(rel) for rel in view.files(stage, phase)]
