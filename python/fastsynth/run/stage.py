"""The stage abstraction: what an executor schedules.

A :class:`Stage` is a name, a frozen config dataclass, the stages whose output it reads
(``needs``) and a sequence of phases. A phase is either

* a :class:`Map` — independent **parts**: ``fn(config, part) -> PartResult`` is a
  module-level function (picklable) that reads the part's input files, writes its own
  files atomically (:mod:`fastsynth.atomic`) and returns counts. Parts of one phase never
  read each other, so an executor may run them in any order, in any process; or
* a :class:`Global` step — ``fn(config, view) -> PartResult`` over everything the earlier
  phases wrote (dedup's clustering over all signatures, Level-3's concept graph).

Dedup, for example, is ``Map(signatures) -> Global(cluster) -> Map(keep/drop)``
(docs/architecture.md, "Stages"). The driver lists the parts of a Map phase
(``parts(config, view)``) from the manifest's finished parts of the stage it reads, and
records each result; only the driver writes the manifest. An executor is therefore a
loop: local runs parts in this process, a Ray executor submits ``fn`` as one task per
part and records results as they return (see :mod:`fastsynth.run.executor`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fastsynth.run.rundir import PartResult, part_path, rejects_path


@dataclass(frozen=True)
class Part:
    """One unit of work: picklable (plain strings only)."""

    root: str
    stage: str
    phase: str
    id: str
    inputs: tuple[str, ...] = ()  # files it reads, relative to root

    def input_paths(self) -> list[Path]:
        return [Path(self.root) / p for p in self.inputs]

    @property
    def out(self) -> Path:
        """This part's own record file."""
        return part_path(self.root, self.stage, self.phase, self.id)

    @property
    def rejects(self) -> Path:
        return rejects_path(self.root, self.stage, f"{self.phase}-{self.id}")

    def global_dir(self) -> Path:
        return Path(self.root) / self.stage / "global"


@dataclass(frozen=True)
class View:
    """What a phase may read of the run: its root and the finished parts of each stage
    (a snapshot of the manifest, so it pickles)."""

    root: str
    finished: dict[str, dict[str, list[str]]]  # stage -> phase -> part ids (sorted)
    info: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # stage -> phase -> part -> info

    def files(self, stage: str, phase: str) -> list[str]:
        """Relative paths of ``stage``'s finished ``phase`` parts, in part order."""
        return [str(part_path("", stage, phase, p)) for p in self.finished.get(stage, {}).get(phase, [])]

    def path(self, rel: str) -> Path:
        return Path(self.root) / rel

    def global_dir(self, stage: str) -> Path:
        return Path(self.root) / stage / "global"


@dataclass(frozen=True)
class Map:
    name: str
    fn: Callable[[Any, Part], PartResult]
    parts: Callable[[Any, View, str, str], list[Part]]  # (config, view, stage, phase) -> parts
    counts: bool = False  # this phase's results are the stage's records in/out/rejected
    # Where a distributed executor runs the parts (the local executor ignores these):
    # Ray resources of one part (e.g. {"num_cpus": 2} or {"num_gpus": 1}; none: one CPU),
    # and ``actors`` = N > 0 to run them on a pool of N long-lived workers, so what ``fn``
    # caches per process (a loaded model) loads once per worker (fastsynth.run.ray_executor).
    # Either may be a function of the stage's config (e.g. synth.gen_actors / gen_gpus).
    resources: dict[str, float] | Callable[[Any], dict[str, float] | None] | None = None
    actors: int | Callable[[Any], int] = 0


@dataclass(frozen=True)
class Global:
    name: str
    fn: Callable[[Any, View], PartResult]
    counts: bool = False


Phase = Map | Global


@dataclass(frozen=True)
class Stage:
    """A stage of a run. ``output``: the phase whose part files are the stage's output
    records (what the next stage reads); ``unit``: what its counts count.
    ``pending``: returns None when the stage can run, else why not (e.g. the feature it
    wraps is not in this fastsynth yet); a pending stage is recorded as such, never faked."""

    name: str
    config: type
    phases: tuple[Phase, ...]
    needs: tuple[str, ...] = ()
    output: str | None = None
    unit: str = "documents"
    description: str = ""
    pending: Callable[[], str | None] = lambda: None


def one_to_one(source_stage: str, source_phase: str = "out") -> Callable[[Any, View, str, str], list[Part]]:
    """Parts mirroring ``source_stage``'s finished ``source_phase`` parts, one each."""
    def parts(config: Any, view: View, stage: str, phase: str) -> list[Part]:
        ids = view.finished.get(source_stage, {}).get(source_phase, [])
        return [Part(view.root, stage, phase, p, (str(part_path("", source_stage, source_phase, p)),))
                for p in ids]
    return parts
