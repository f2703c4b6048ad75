"""Executors: run a stage's phases over a run directory.

:class:`LocalExecutor` runs every part in this process, one after the other (the native
hot paths use all cores inside a part). Another executor — Ray, one task per part — only
has to change :meth:`LocalExecutor.map_parts`: submit ``phase.fn(config, part)`` for every
part and hand each result to ``record`` as it returns. Everything else (which parts are
left, the manifest, the count checks, the stage states) stays in :func:`run_stage`.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterable

from fastsynth.errors import FastsynthError
from fastsynth.progress import progress
from fastsynth.run.rundir import PartResult, RunDir, RunError
from fastsynth.run.stage import Global, Map, Part, Stage, View


class LocalExecutor:
    name = "local"

    def __init__(self, show_progress: bool | None = None):
        self.show_progress = show_progress

    def stage_scope(self) -> contextlib.AbstractContextManager[None]:
        """What one stage's phases share (a distributed executor's actor pools); here nothing."""
        return contextlib.nullcontext()

    def map_parts(self, fn: Callable[[Any, Part], PartResult], config: Any, parts: list[Part],
                  record: Callable[[Part, PartResult], None], phase: Any = None) -> None:
        """``phase``: the Map phase's declarations, which only distributed executors read."""
        with progress(total=len(parts), desc=parts[0].stage if parts else "", unit="part",
                      enabled=self.show_progress) as bar:
            for part in parts:
                record(part, _call(fn, config, part, f"stage {part.stage}, part {part.phase}/{part.id}"))
                bar.update(1)


def _call(fn: Callable, config: Any, arg: Any, where: str) -> PartResult:
    """Run a part; errors become one-line RunErrors naming the stage and part."""
    try:
        return fn(config, arg)
    except FastsynthError as e:
        raise RunError(f"{where}: {e}") from e
    except OSError as e:
        name = f" {e.filename}" if getattr(e, "filename", None) else ""
        raise RunError(f"{where}:{name} {e.strerror or e} (nothing of this part was recorded; "
                       "re-run the same command to continue)") from e


def view_of(run: RunDir) -> View:
    finished: dict[str, dict[str, list[str]]] = {}
    info: dict[str, dict[str, dict[str, Any]]] = {}
    for s, st in run.manifest["stages"].items():
        finished[s] = {}
        for ph, parts in st.get("phases", {}).items():
            # a global step that wrote record parts lists them in its info["parts"]
            listed = parts.get("global", {}).get("info", {}).get("parts") if list(parts) == ["global"] else None
            finished[s][ph] = sorted(listed) if listed is not None else sorted(parts)
        info[s] = {ph: {p: r.get("info", {}) for p, r in parts.items()}
                   for ph, parts in st.get("phases", {}).items()}
    return View(str(run.root), finished, info)


def run_stage(run: RunDir, stage: Stage, config: Any, executor: LocalExecutor | None = None) -> dict:
    """Run what is left of ``stage`` in ``run``; return its manifest entry."""
    executor = executor or LocalExecutor()
    st = run.stage(stage.name)
    if st["state"] == "done":
        return st
    reason = stage.pending() if stage.phases else (stage.pending() or "the stage has no work defined")
    if reason is not None:
        run.set_state(stage.name, "pending", reason=reason)
        return run.stage(stage.name)
    for need in stage.needs:
        state = run.manifest["stages"].get(need, {}).get("state")
        if state == "pending":
            run.set_state(stage.name, "pending", reason=f"waits for stage {need} (pending)")
            return run.stage(stage.name)
        if state != "done":
            raise RunError(f"stage {stage.name} needs the output of stage {need!r}, which this run "
                           f"has not finished (state: "
                           f"{run.manifest['stages'].get(need, {}).get('state', 'not in this run')})")
    t0 = time.perf_counter()
    run.set_state(stage.name, "running", started=st.get("started") or _now())
    # what the executor keeps for the stage's phases (Ray: actor pools, models loaded on
    # them) ends with the stage's last Map phase: driver steps after it (synth's `out`)
    # run with the pool's memory and GPUs given back
    scope = getattr(executor, "stage_scope", contextlib.nullcontext)
    last_map = max((i for i, ph in enumerate(stage.phases) if isinstance(ph, Map)), default=-1)
    with scope():
        for phase in stage.phases[:last_map + 1]:
            _run_phase(run, stage, phase, config, executor)
    for phase in stage.phases[last_map + 1:]:
        _run_phase(run, stage, phase, config, executor)
    counts = stage_counts(run, stage)
    _check_chain(run, stage, counts)
    seconds = st.get("seconds", 0.0) + time.perf_counter() - t0
    run.set_state(stage.name, "done", counts=counts, unit=stage.unit, seconds=round(seconds, 3),
                  finished=_now())
    return run.stage(stage.name)


def _run_phase(run: RunDir, stage: Stage, phase: Global | Map, config: Any, executor: Any) -> None:
    """The parts of ``phase`` not yet in the manifest."""
    if isinstance(phase, Global):
        if not run.part_done(stage.name, phase.name, "global"):
            res = _call(phase.fn, config, view_of(run), f"stage {stage.name}, step {phase.name}")
            run.finish_part(stage.name, phase.name, "global", res)
        return
    parts = phase.parts(config, view_of(run), stage.name, phase.name)
    todo = [p for p in parts if not run.part_done(stage.name, phase.name, p.id)]
    for p in todo:
        for f in p.input_paths():
            if not f.exists():
                raise RunError(f"stage {stage.name}, part {p.phase}/{p.id}: input {f} is missing "
                               "(listed as finished in the manifest); re-run with --overwrite")
    executor.map_parts(phase.fn, config, todo,
                       lambda part, res: run.finish_part(stage.name, part.phase, part.id, res), phase=phase)


def stage_counts(run: RunDir, stage: Stage) -> dict[str, Any]:
    n = {"in": 0, "out": 0, "rejected": 0}
    reasons: dict[str, int] = {}
    for phase in stage.phases:
        if not phase.counts:
            continue
        for r in run.parts(stage.name, phase.name).values():
            n["in"] += r["n_in"]
            n["out"] += r["n_out"]
            n["rejected"] += r["n_rejected"]
            for k, v in r["rejected_by_reason"].items():
                reasons[k] = reasons.get(k, 0) + v
    return {**n, "rejected_by_reason": dict(sorted(reasons.items())),
            "balanced": n["in"] == n["out"] + n["rejected"]}


def _check_chain(run: RunDir, stage: Stage, counts: dict[str, Any]) -> None:
    """A stage reading one stage's records (same unit) must take in exactly what that
    stage put out."""
    if len(stage.needs) != 1 or stage.output is None:
        return
    prev = run.manifest["stages"][stage.needs[0]]
    if prev.get("unit") != stage.unit or not prev.get("counts"):
        return
    if prev["counts"]["out"] != counts["in"]:
        raise RunError(f"stage {stage.name} read {counts['in']} {stage.unit} but stage "
                       f"{stage.needs[0]} wrote {prev['counts']['out']}; the run directory is inconsistent")


def run_stages(run: RunDir, stages: Iterable[tuple[Stage, Any]],
               executor: LocalExecutor | None = None) -> None:
    for stage, config in stages:
        run_stage(run, stage, config, executor)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
