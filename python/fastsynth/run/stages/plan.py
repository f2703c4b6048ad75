"""Stage ``plan``: the budget plan of the reference scenario (seed-5m), with the law
constants fitted on this run beside the published ones once the ``fit`` stage has run.

Writes ``plan/plan.md``, ``plan/plan.html`` and its figures (:mod:`fastsynth.plan.report`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from fastsynth.run.config import option
from fastsynth.run.rundir import PartResult
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
    fitted = "fit" in view.finished and view.finished["fit"]
    assumptions = list(SEED_5M_ASSUMPTIONS)
    if not fitted:
        assumptions.append("constants fitted on this run: pending (the fit stage has not run)")
    out = view.global_dir("plan").parent
    paths = build_report(result, out, title=f"fastsynth plan — scenario {config.scenario}",
                         checks=scenario_checks(inputs), assumptions=assumptions)
    phases = [{"name": s.phase.name, "loss": s.loss, "tokens_per_param": s.tokens_per_param,
               "chinchilla_n": s.chinchilla_n, "chinchilla_d": s.chinchilla_d} for s in result.phases]
    info = {"total_usd": result.total_usd, "budget_usd": inputs.budget_usd, "fits": result.all_fit,
            "items": [{"name": i.name, "usd": i.usd, "gpu_hours": i.gpu_hours} for i in result.items],
            "phases": phases, "constants": config.constants,
            "fitted_constants": "pending" if not fitted else "see fit stage",
            "files": {k: str(v.relative_to(view.root)) for k, v in paths.items()}}
    json.dumps(info)  # the manifest must be able to hold it
    return PartResult(info=info)


STAGE = Stage("plan", PlanStageConfig, (Global("plan", plan),), unit="plans",
              description="seed-5m budget plan (published constants; fitted ones when fit ran)")
