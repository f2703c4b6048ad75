"""The plan report: ``plan.md`` and a self-contained ``plan.html`` with its figures.

Built once as a :class:`fastsynth.report.Document` by :func:`build_report` and rendered
twice, so the two files never disagree. Figures are PNG files beside ``plan.md``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from fastsynth.plan import figures
from fastsynth.plan.budget import BudgetPlan
from fastsynth.plan.constants import CONSTANT_SETS
from fastsynth.plan.laws import chinchilla_optimal
from fastsynth.plan.scenario import Check
from fastsynth.report import Document


def _b(x: float) -> str:
    return f"{x / 1e9:,.2f}B"


def _t(x: float) -> str:
    return f"{x / 1e12:,.3g}T" if x >= 1e11 else f"{x / 1e9:,.3g}B"


def _usd(x: float) -> str:
    return f"${x:,.0f}"


def _verdict(ok: bool | None) -> str:
    return {True: "consistent", False: "INCONSISTENT / flagged", None: "note"}[ok]


def build_report(plan: BudgetPlan, out_dir: Path, *, title: str = "fastsynth plan",
                 checks: Sequence[Check] = (), fit: Any = None,
                 fit_data: dict[str, Any] | None = None,
                 assumptions: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``plan.md``, ``plan.html`` and the PNG figures into ``out_dir``; return paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    inp, hw = plan.inputs, plan.inputs.hardware
    doc = Document(title)
    doc.h("Inputs")
    doc.table(["input", "value"], [
        ["budget", _usd(inp.budget_usd)], ["GPU price", f"${hw.gpu_hour_usd:g} per GPU-hour"],
        ["peak", f"{hw.peak_flops / 1e12:g} TFLOP/s"], ["MFU", f"{hw.mfu:.0%}"],
        ["synthetic cost", inp.synthetic.describe(hw) if inp.synthetic else "none"],
        ["QA share", f"{inp.qa_share:.0%}"],
        ["lifetime inference tokens", f"{inp.inference_tokens:.3g}"],
        ["law constants", inp.constants]] +
        [[f"phase: {p.name}", f"{_b(p.n_params)} params x {_t(p.n_tokens)} tokens, "
          f"{p.synthetic_share:.0%} synthetic"] for p in inp.phases])
    if assumptions:
        doc.p("Assumptions (not measurements; override them): " + " · ".join(assumptions))
    doc.h("Cost per line item")
    doc.table(["item", "GPU-hours", "dollars", "fits", "how"],
              [[i.name, f"{i.gpu_hours:,.0f}" if i.gpu_hours is not None else "-", _usd(i.usd),
                "yes" if ok else "NO", i.note] for i, ok in zip(plan.items, plan.fits)])
    doc.p(f"Total {_usd(plan.total_usd)} of {_usd(inp.budget_usd)}: "
          + (f"fits, {_usd(plan.remaining_usd)} left." if plan.all_fit else
             f"does NOT fit, {_usd(-plan.remaining_usd)} over."))
    doc.h("Chosen points beside the optimal ones")
    rows = []
    for s in plan.phases:
        ia = s.inference_aware
        rows.append([s.phase.name, f"{_b(s.phase.n_params)} x {_t(s.phase.n_tokens)}",
                     f"{s.tokens_per_param:,.0f}", f"{s.loss:.4f}",
                     f"{_b(s.chinchilla_n)} x {_t(s.chinchilla_d)} (L {s.chinchilla_loss:.4f})",
                     f"{_b(ia.n_params)} x {_t(ia.n_tokens)} ({ia.total_flops:.3g} vs "
                     f"{s.lifetime_flops:.3g} lifetime FLOPs)"])
    doc.table(["phase", "chosen N x D", "tokens/param", "loss", "Chinchilla-optimal at same "
               "6ND", "inference-aware at same loss"], rows)
    doc.table(["constant set"] + [p.name for p in inp.phases],
              [[name] + [f"N_opt {_b(chinchilla_optimal(6 * p.n_params * p.n_tokens, name)[0])}"
                         for p in inp.phases] for name in CONSTANT_SETS])
    if checks:
        doc.h("Scenario figures beside computed ones")
        doc.table(["topic", "scenario says", "computed", "verdict", "note"],
                  [[c.topic, c.claimed, c.computed, _verdict(c.ok), c.note] for c in checks])
    if fit is not None and fit_data is not None:
        _fit_section(doc, plan, fit, fit_data, out_dir)
    doc.h("Figures")
    marks = [(p.name, p.n_params, p.n_tokens) for p in inp.phases]
    sizes = [p.n_params for p in inp.phases] + [s.chinchilla_n for s in plan.phases]
    doc.figure(figures.loss_vs_tokens(out_dir / "loss_vs_tokens.png", sizes, inp.constants,
                                      marks), "Loss vs tokens for candidate sizes")
    budgets = sorted({s.training_flops for s in plan.phases} |
                     {6 * p.n_params * p.n_tokens * 10 for p in inp.phases[-1:]})
    doc.figure(figures.isoflop(out_dir / "isoflop.png", budgets, inp.constants, marks),
               "isoFLOP curves")
    doc.figure(figures.cost_breakdown(out_dir / "cost_breakdown.png", plan), "Cost breakdown")
    return doc.write(out_dir, "plan")


def _fit_section(doc: Document, plan: BudgetPlan, fit: Any, data: dict[str, Any],
                 out_dir: Path) -> None:
    import warnings

    doc.h("Law fitted to your runs")
    status = "converged" if fit.converged else f"DID NOT CONVERGE ({fit.message})"
    extra = ""
    if hasattr(fit, "n_starts_at_best"):
        extra = (f" {fit.n_starts_at_best} of {fit.n_starts} starts reached the best Huber "
                 f"objective; {fit.bootstrap_converged:.0%} of the bootstrap refits converged.")
    doc.p(f"{fit.n_points} points, R^2 = {fit.r2:.4f} (on the metric itself), {status}."
          + extra)
    ci = fit.param_intervals()
    doc.table(["parameter", "estimate", "95% bootstrap interval"],
              [[k, f"{v:.5g}", f"{ci[k][0]:.5g} .. {ci[k][1]:.5g}"]
               for k, v in fit.params().items()])
    rows = []
    for p in plan.inputs.phases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = (fit.predict(p.n_params, p.n_tokens) if "n_params" in data
                    else fit.predict(p.n_tokens))
        flag = (f"EXTRAPOLATED {pred.extrapolation_factor[0]:,.0f}x past the data"
                if pred.extrapolated[0] else "within 10x of the data")
        rows.append([p.name, f"{pred.value[0]:.4f}",
                     f"{pred.lower[0]:.4f} .. {pred.upper[0]:.4f}", flag])
    doc.table(["phase", "predicted", "95% interval", "extrapolation"], rows)
    if "n_params" in data:
        path = figures.fitted_chinchilla(out_dir / "fit.png", fit, data["n_params"],
                                         data["n_tokens"], data["loss"])
    else:
        path = figures.fitted_rectified(out_dir / "fit.png", fit, data["n_tokens"],
                                        data["metric"])
    doc.figure(path, "Fitted law with data and 95% bootstrap band")
