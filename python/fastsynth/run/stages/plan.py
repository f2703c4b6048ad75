"""Stage ``plan``: the budget plan of the reference scenario (seed-5m), with the law
constants fitted on this run beside the published ones once the ``fit`` stage has run.

Writes ``plan/plan.md``, ``plan/plan.html`` and its figures (:mod:`fastsynth.plan.report`).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Literal

from fastsynth.run.config import option
from fastsynth.run.rundir import PartResult, RunError
from fastsynth.run.stage import Global, Stage, View


@dataclass(frozen=True)
class PlanStageConfig:
    scenario: Literal["seed-5m"] = option("seed-5m", "reference scenario to plan")
    constants: Literal["hoffmann", "hoffmann-unrounded", "epoch"] = option(
        "hoffmann", "published law constants the plan uses")


def plan(config: PlanStageConfig, view: View) -> PartResult:
    from fastsynth.plan.budget import plan_budget
    from fastsynth.plan.config import inputs_from_mapping
    from fastsynth.plan.report import build_report
    from fastsynth.plan.scenario import SEED_5M_ASSUMPTIONS, scenario_checks, seed_5m_mapping

    data = seed_5m_mapping()
    data["constants"] = config.constants
    inputs = inputs_from_mapping(data, f"scenario {config.scenario}")
    result = plan_budget(inputs)
    fit, points, fitted = _fitted_on_this_run(view)
    assumptions = list(SEED_5M_ASSUMPTIONS)
    if fit is None:
        assumptions.append("constants fitted on this run: none (the train stage has not run)")
    else:
        assumptions.append(f"constants fitted on this run: {len(points['loss'])} tiny sweep runs "
                           "(non-embedding N, held-out loss of this run's mix and BPE); they describe "
                           "this corpus and grid, and the phases below lie many decades past them")
    out = view.global_dir("plan").parent
    paths = build_report(result, out, title=f"fastsynth plan — scenario {config.scenario}",
                         checks=scenario_checks(inputs), assumptions=assumptions, fit=fit,
                         fit_data=points)
    phases = [{"name": s.phase.name, "loss": s.loss, "tokens_per_param": s.tokens_per_param,
               "chinchilla_n": s.chinchilla_n, "chinchilla_d": s.chinchilla_d} for s in result.phases]
    info = {"total_usd": result.total_usd, "budget_usd": inputs.budget_usd, "fits": result.all_fit,
            "items": [{"name": i.name, "usd": i.usd, "gpu_hours": i.gpu_hours} for i in result.items],
            "phases": phases, "constants": config.constants,
            "fitted_constants": fitted,
            "files": {k: str(v.relative_to(view.root)) for k, v in paths.items()}}
    json.dumps(info)  # the manifest must be able to hold it
    return PartResult(info=info)


def _fitted_on_this_run(view: View) -> tuple:
    """(ChinchillaFit, its points, the fitted constants with R^2) from the train stage's
    ``runs.jsonl``, or (None, None, None) when the run has no finished sweep. The fit
    object (the plan report needs it for predictions, intervals and its figure) is
    rebuilt from fit.json's ``fit_state``; its constants are checked against fit.json's."""
    import numpy as np

    from fastsynth.plan.fit import fit_chinchilla, start_grid

    info = view.info.get("train", {}).get("sweep", {}).get("global")
    if not info:
        return None, None, None
    saved = json.loads(view.path(info["files"]["fit"]).read_text())
    runs = [json.loads(x) for x in view.path(info["files"]["runs"]).read_text().splitlines() if x]
    points = {"n_params": np.array([r["n_params"] for r in runs], dtype=np.float64),
              "n_tokens": np.array([r["n_tokens"] for r in runs], dtype=np.float64),
              "loss": np.array([r["eval_loss"] for r in runs], dtype=np.float64)}
    from fastsynth.train.sweep import fit_from_json
    fit = fit_from_json(saved)  # the sweep's own fit, as it wrote it: no second fit
    if fit is None:  # a fit.json from before fit_state: refit with the sweep's settings
        cfg = saved["config"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_chinchilla(points["n_params"], points["n_tokens"], points["loss"],
                                 n_bootstrap=cfg["n_bootstrap"],
                                 starts=start_grid()[::cfg["fit_start_stride"]])
    c = fit.constants
    # the same data and procedure as the sweep's fit: the same point estimate
    if not math.isclose(c.E, saved["E"], rel_tol=1e-6, abs_tol=1e-9):
        raise RunError(f"stage plan: the law refitted from {info['files']['runs']} (E = {c.E}) "
                       f"differs from {info['files']['fit']} (E = {saved['E']})")
    fitted = {k: saved[k] for k in ("E", "A", "B", "alpha", "beta", "r2")}
    return fit, points, fitted


STAGE = Stage("plan", PlanStageConfig, (Global("plan", plan),), unit="plans",
              description="seed-5m budget plan (published constants; the ones fitted on this run beside them)")
