"""The synthesis run directory: Parquet parts written atomically and a manifest.

Layout of ``OUT/``::

    manifest.json          config, prompt versions, finished parts and their call stats
    concepts/<part>.parquet topics and concepts per document (Levels 2 and 3 share them)
    qa/<part>.parquet      accepted QA records (schema: provenance.QA_SCHEMA)
    rejects/<part>.parquet rejected items with stage and reason (provenance.REJECT_SCHEMA)
    summary.json           yields, rejections, tokens, diversity

A part is written to a temporary file and renamed into place; it counts as finished only
once the manifest (also replaced atomically) lists it, so a run killed at any moment
resumes by redoing at most the part it was writing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.errors import ConfigError

MANIFEST = "manifest.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


class RunDir:
    """A run directory; ``config`` must match the one a previous run recorded there."""

    def __init__(self, root: str | os.PathLike, config: dict[str, Any], overwrite: bool = False):
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
        else:
            if overwrite and self.root.exists():
                for sub in ("qa", "rejects", "concepts"):
                    for p in (self.root / sub).glob("*.parquet"):
                        p.unlink()
            self.manifest = {"config": config, "parts": {}}
            self.save()

    def save(self) -> None:
        atomic_write_bytes(self.root / MANIFEST, json.dumps(self.manifest, indent=1, sort_keys=True).encode())

    def done(self, part: str) -> bool:
        return part in self.manifest["parts"]

    def finish(self, part: str, tables: dict[str, pa.Table], info: dict[str, Any]) -> None:
        """Write ``tables`` (folder -> table) as ``<folder>/<part>.parquet``, then record the part."""
        for folder, table in tables.items():
            write_table(self.root / folder / f"{part}.parquet", table)
        self.manifest["parts"][part] = info
        self.save()

    def read(self, folder: str, schema: pa.Schema) -> pa.Table:
        """All finished parts of ``folder`` in part order (an empty table if none)."""
        tables = [pq.read_table(self.root / folder / f"{p}.parquet", schema=schema)
                  for p in sorted(self.manifest["parts"]) if (self.root / folder / f"{p}.parquet").exists()]
        return pa.concat_tables(tables) if tables else schema.empty_table()
