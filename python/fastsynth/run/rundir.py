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
writes the manifest; workers write part files and return a :class:`PartResult`. The
manifest, config and version checks and the part listing are
:class:`fastsynth.partstore.PartStore`'s, shared with the synthesis run directory.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastsynth.errors import FastsynthError
from fastsynth.partstore import MANIFEST, PartStore, config_diff, versions

__all__ = ["FORMAT", "MANIFEST", "PartResult", "RunDir", "RunError", "config_diff", "part_path",
           "rejects_path", "versions"]

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


class RunDir(PartStore):
    """A run directory opened for one configuration.

    ``config`` maps stage name -> that stage's config as plain JSON (see
    :func:`fastsynth.run.config.as_dict`), plus ``"stages"`` (their order). Opening a
    directory that holds a run written by another fastsynth version or format, or with a
    different config, raises ConfigError naming the differing keys (``stage.key``).
    """

    def __init__(self, root: str | os.PathLike, config: dict[str, Any], *, overwrite: bool = False):
        super().__init__(root, config, overwrite=overwrite, format=FORMAT,
                         fresh={"created": _now(), "stages": {}})

    # -- manifest -------------------------------------------------------------------------
    def save(self) -> None:
        self.manifest["updated"] = _now()
        super().save()

    def stage(self, name: str) -> dict[str, Any]:
        return self.manifest["stages"].setdefault(
            name, {"state": "pending", "phases": {}, "counts": None})

    def set_state(self, name: str, state: str, **extra: Any) -> None:
        st = self.stage(name)
        st["state"] = state
        st.update(extra)
        self.save()

    def part_done(self, stage: str, phase: str, part: str) -> bool:
        self.stage(stage)
        return self.is_listed(_group(stage, phase), part)

    def finish_part(self, stage: str, phase: str, part: str, result: PartResult) -> None:
        """Record a part whose files are already in place (this is its commit)."""
        result.check(f"stage {stage}, phase {phase}, part {part}")
        self.stage(stage)
        self.record(_group(stage, phase), part, asdict(result))

    def parts(self, stage: str, phase: str) -> dict[str, dict[str, Any]]:
        """Finished parts of ``stage``'s ``phase``, in part order."""
        return self.listed(_group(stage, phase))

    # -- paths ------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


def part_path(root: str | os.PathLike, stage: str, phase: str, part: str) -> Path:
    """Where ``part`` of ``stage``'s ``phase`` keeps its records."""
    return Path(root) / stage / phase / f"{part}.parquet"


def rejects_path(root: str | os.PathLike, stage: str, part: str) -> Path:
    return Path(root) / "rejects" / stage / f"{part}.parquet"


def _group(stage: str, phase: str) -> tuple[str, ...]:
    """Where the manifest lists ``stage``'s finished ``phase`` parts."""
    return ("stages", stage, "phases", phase)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
