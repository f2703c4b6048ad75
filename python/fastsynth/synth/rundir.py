"""The synthesis run directory: Parquet parts written atomically and a manifest.

Layout of ``OUT/``::

    manifest.json          config, prompt versions, finished parts and their call stats
    concepts/<part>.parquet topics and concepts per document (Levels 2 and 3 share them)
    qa/<part>.parquet      accepted QA records (schema: provenance.QA_SCHEMA)
    rejects/<part>.parquet rejected items with stage and reason (provenance.REJECT_SCHEMA)
    summary.json           yields, rejections, tokens, diversity

A part is written to a temporary file and renamed into place (:mod:`fastsynth.atomic`);
it counts as finished only once the manifest (also replaced atomically) lists it, so a
run killed at any moment resumes by redoing at most the part it was writing. A listed
part whose file is damaged (a disk fault, a hand edit) stops the run naming the part;
``redo_damaged=True`` (``fastsynth synth --redo-damaged``) forgets such parts so they are
generated again. The manifest, config check, part listing and damaged-part check are
:class:`fastsynth.partstore.PartStore`'s, shared with the run layer's run directory
(docs/architecture.md, "Run directory").
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import atomic_write_bytes, write_parquet
from fastsynth.errors import InputError
from fastsynth.partstore import MANIFEST, PartStore

FOLDERS = ("qa", "rejects", "concepts")
PARTS = ("parts",)  # the manifest's one group of finished parts

__all__ = ["RunDir", "MANIFEST", "atomic_write_bytes", "write_table"]


def write_table(path: Path, table: pa.Table) -> None:
    write_parquet(path, table)


class RunDir(PartStore):
    """A run directory; ``config`` must match the one a previous run recorded there."""

    def __init__(self, root: str | os.PathLike, config: dict[str, Any], overwrite: bool = False,
                 redo_damaged: bool = False):
        if overwrite and Path(root).is_dir():
            for sub in FOLDERS:
                for p in (Path(root) / sub).glob("*.parquet"):
                    p.unlink()
        super().__init__(root, config, overwrite=overwrite, fresh={"parts": {}}, what="output",
                         remedy="use a new output directory or overwrite=True")
        self.check_damaged(PARTS, self._files, redo=redo_damaged,
                           hint="re-run the same command with --redo-damaged (fastsynth synth) or "
                                "redo_damaged=True (synthesize) to generate it again")

    def _files(self, part: str) -> list[Path]:
        return [self.root / sub / f"{part}.parquet" for sub in FOLDERS]

    def done(self, part: str) -> bool:
        return self.is_listed(PARTS, part)

    def finish(self, part: str, tables: dict[str, pa.Table], info: dict[str, Any]) -> None:
        """Write ``tables`` (folder -> table) as ``<folder>/<part>.parquet``, then record the part."""
        for folder, table in tables.items():
            write_parquet(self.root / folder / f"{part}.parquet", table)
        self.record(PARTS, part, info)

    def read(self, folder: str, schema: pa.Schema) -> pa.Table:
        """All finished parts of ``folder`` in part order (an empty table if none)."""
        tables = []
        for p in self.listed(PARTS):
            f = self.root / folder / f"{p}.parquet"
            if f.exists():
                try:
                    tables.append(pq.read_table(f, schema=schema))
                except (pa.ArrowInvalid, OSError) as e:
                    raise InputError(f"finished part {p!r} is damaged ({e}); re-run with --redo-damaged",
                                     source=str(f)) from None
        return pa.concat_tables(tables) if tables else schema.empty_table()
