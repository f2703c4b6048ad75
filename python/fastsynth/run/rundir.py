"""The run directory: a manifest and one folder of Parquet parts per stage.

Layout of ``RUN/``::

    manifest.json                 format, versions, config, every stage's state and counts
    <stage>/<phase>/<part>.parquet one file per finished part (records, or a phase's data)
    <stage>/global/...            what a stage's global step wrote
    rejects/<stage>/<part>.parquet records a stage dropped, each with a reason

Rules (docs/architecture.md, "Run directory"): every file is written through
:mod:`fastsynth.atomic` (temp sibling + rename); a part counts as finished only once the
manifest (also replaced atomically) lists it, so a killed run redoes at most the parts
that were in flight, and files of unlisted parts are never read. Only the driver process
writes the manifest; workers write part files and return a :class:`PartResult`.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastsynth._version import __version__
from fastsynth.atomic import atomic_write_text, sweep_temps
from fastsynth.errors import ConfigError, FastsynthError

MANIFEST = "manifest.json"
FORMAT = 1  # bump when the layout changes; runs of another format are refused


class RunError(FastsynthError):
    """A stage or part failed in a way the user can act on (names stage, part and file)."""


@dataclass
class PartResult:
    """What one part (or a global step) did. ``n_in == n_out + n_rejected`` for parts
    that count records; ``rejected_by_reason`` sums to ``n_rejected``."""

    n_in: int = 0
    n_out: int = 0
    n_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        if self.n_in != self.n_out + self.n_rejected:
            raise RunError(f"{where}: records in ({self.n_in}) != out ({self.n_out}) + rejected "
                           f"({self.n_rejected}); the part is not recorded")
        if self.rejected_by_reason and sum(self.rejected_by_reason.values()) != self.n_rejected:
            raise RunError(f"{where}: rejects by reason {self.rejected_by_reason} do not sum to "
                           f"{self.n_rejected}; the part is not recorded")


def versions() -> dict[str, str]:
    import numpy
    import pyarrow

    return {"fastsynth": __version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "pyarrow": pyarrow.__version__}


class RunDir:
    """A run directory opened for one configuration.

    ``config`` maps stage name -> that stage's config as plain JSON (see
    :func:`fastsynth.run.config.as_dict`), plus ``"stages"`` (their order). Opening a
    directory that holds a run written by another fastsynth version or format, or with a
    different config, raises ConfigError naming the differing keys (``stage.key``).
    """

    def __init__(self, root: str | os.PathLike, config: dict[str, Any], *, overwrite: bool = False):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"run directory {self.root} exists and is not a directory")
        path = self.root / MANIFEST
        if path.exists() and overwrite:
            path.unlink()
        if path.exists():
            try:
                self.manifest = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"{path}: unreadable manifest ({e}); use a new run directory "
                                  "or --overwrite") from None
            got = (self.manifest.get("format"), self.manifest.get("versions", {}).get("fastsynth"))
            if got != (FORMAT, __version__):
                raise ConfigError(f"{path}: written by fastsynth {got[1]} (run format {got[0]}); this "
                                  f"is fastsynth {__version__} (format {FORMAT}): use a new run "
                                  "directory or --overwrite")
            diff = config_diff(self.manifest.get("config", {}), config)
            if diff:
                raise ConfigError(f"{self.root} holds a run with another config (differs in: "
                                  f"{', '.join(diff)}); use a new run directory or --overwrite")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.manifest = {"format": FORMAT, "versions": versions(), "config": config,
                             "created": _now(), "stages": {}}
            self.save()
        sweep_temps(self.root)

    # -- manifest -------------------------------------------------------------------------
    def save(self) -> None:
        self.manifest["updated"] = _now()
        atomic_write_text(self.root / MANIFEST, json.dumps(self.manifest, indent=1, sort_keys=True))

    def stage(self, name: str) -> dict[str, Any]:
        return self.manifest["stages"].setdefault(
            name, {"state": "pending", "phases": {}, "counts": None})

    def set_state(self, name: str, state: str, **extra: Any) -> None:
        st = self.stage(name)
        st["state"] = state
        st.update(extra)
        self.save()

    def part_done(self, stage: str, phase: str, part: str) -> bool:
        return part in self.stage(stage)["phases"].get(phase, {})

    def finish_part(self, stage: str, phase: str, part: str, result: PartResult) -> None:
        """Record a part whose files are already in place (this is its commit)."""
        result.check(f"stage {stage}, phase {phase}, part {part}")
        self.stage(stage)["phases"].setdefault(phase, {})[part] = asdict(result)
        self.save()

    def parts(self, stage: str, phase: str) -> dict[str, dict[str, Any]]:
        """Finished parts of ``stage``'s ``phase``, in part order."""
        found = self.manifest["stages"].get(stage, {}).get("phases", {}).get(phase, {})
        return {k: found[k] for k in sorted(found)}

    # -- paths ------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


def part_path(root: str | os.PathLike, stage: str, phase: str, part: str) -> Path:
    """Where ``part`` of ``stage``'s ``phase`` keeps its records."""
    return Path(root) / stage / phase / f"{part}.parquet"


def rejects_path(root: str | os.PathLike, stage: str, part: str) -> Path:
    return Path(root) / "rejects" / stage / f"{part}.parquet"


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += config_diff(old.get(k, _ABSENT), new.get(k, _ABSENT), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".") or "config"]


_ABSENT = "<absent>"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
