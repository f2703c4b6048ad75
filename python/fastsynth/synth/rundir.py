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
generated again. The same rules hold for every run directory (docs/architecture.md).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import atomic_write_bytes, sweep_temps, write_parquet
from fastsynth.errors import ConfigError, InputError

MANIFEST = "manifest.json"
FOLDERS = ("qa", "rejects", "concepts")

__all__ = ["RunDir", "MANIFEST", "atomic_write_bytes", "write_table"]


def write_table(path: Path, table: pa.Table) -> None:
    write_parquet(path, table)


class RunDir:
    """A run directory; ``config`` must match the one a previous run recorded there."""

    def __init__(self, root: str | os.PathLike, config: dict[str, Any], overwrite: bool = False,
                 redo_damaged: bool = False):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"output {self.root} exists and is not a directory")
        path = self.root / MANIFEST
        if path.exists() and not overwrite:
            try:
                self.manifest = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: unreadable manifest ({e}); use a new output or overwrite") from None
            if self.manifest.get("config") != config:
                old = self.manifest.get("config", {})
                diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise ConfigError(f"{self.root} holds a run with other settings ({', '.join(diff)}); "
                                  "use a new output directory or overwrite=True")
            sweep_temps(self.root)
            self._check_parts(redo_damaged)
        else:
            if overwrite and self.root.exists():
                for sub in FOLDERS:
                    for p in (self.root / sub).glob("*.parquet"):
                        p.unlink()
            self.manifest = {"config": config, "parts": {}}
            self.save()

    def _check_parts(self, redo: bool) -> None:
        """Every listed part's files must be readable Parquet (footer and schema)."""
        damaged = []
        for part in sorted(self.manifest["parts"]):
            for sub in FOLDERS:
                f = self.root / sub / f"{part}.parquet"
                if not f.exists():
                    continue
                try:
                    pq.read_metadata(f)
                except (pa.ArrowInvalid, OSError) as e:
                    damaged.append((part, f, e))
        if not damaged:
            return
        if redo:
            for part, f, _ in damaged:
                self.manifest["parts"].pop(part, None)
                f.unlink(missing_ok=True)
            self.save()
            return
        part, f, e = damaged[0]
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise InputError(f"finished part {part!r}{more} is damaged ({e}); re-run the same command "
                         "with --redo-damaged (fastsynth synth) or redo_damaged=True "
                         "(synthesize) to generate it again", source=str(f))

    def save(self) -> None:
        atomic_write_bytes(self.root / MANIFEST, json.dumps(self.manifest, indent=1, sort_keys=True).encode())

    def done(self, part: str) -> bool:
        return part in self.manifest["parts"]

    def finish(self, part: str, tables: dict[str, pa.Table], info: dict[str, Any]) -> None:
        """Write ``tables`` (folder -> table) as ``<folder>/<part>.parquet``, then record the part."""
        for folder, table in tables.items():
            write_parquet(self.root / folder / f"{part}.parquet", table)
        self.manifest["parts"][part] = info
        self.save()

    def read(self, folder: str, schema: pa.Schema) -> pa.Table:
        """All finished parts of ``folder`` in part order (an empty table if none)."""
        tables = []
        for p in sorted(self.manifest["parts"]):
            f = self.root / folder / f"{p}.parquet"
            if f.exists():
                try:
                    tables.append(pq.read_table(f, schema=schema))
                except (pa.ArrowInvalid, OSError) as e:
                    raise InputError(f"finished part {p!r} is damaged ({e}); re-run with --redo-damaged",
                                     source=str(f)) from None
        return pa.concat_tables(tables) if tables else schema.empty_table()
