"""Plots for the plan report (matplotlib, Agg backend; PNG files).

Each function draws one figure into ``path`` and returns it. Loss is in nats/token;
token and parameter axes are logarithmic.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fastsynth.errors import DependencyError
from fastsynth.plan.budget import BudgetPlan
from fastsynth.plan.laws import chinchilla_loss, chinchilla_optimal
from fastsynth.plan.prediction import ExtrapolationWarning


def _plt():
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DependencyError("matplotlib", "plan", "plan report plots") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def loss_vs_tokens(path: Path, sizes: Sequence[float], constants: Any,
                   marks: Sequence[tuple[str, float, float]] = ()) -> Path:
    """Chinchilla loss against training tokens for each model size; ``marks`` = (label, N, D)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    d_max = max([m[2] for m in marks] + [1e12]) * 3
    d = np.geomspace(1e9, d_max, 200)
    for n in sorted(set(sizes)):
        ax.plot(d, chinchilla_loss(n, d, constants), label=f"{n / 1e9:.3g}B params")
        ax.plot(20 * n, chinchilla_loss(n, 20 * n, constants), "k|", ms=10)
    for label, n, tokens in marks:
        ax.plot(tokens, chinchilla_loss(n, tokens, constants), "o", ms=7)
        ax.annotate(label, (tokens, chinchilla_loss(n, tokens, constants)),
                    textcoords="offset points", xytext=(4, 6), fontsize=8)
    _finish_log_axes(ax, "training tokens D", "Chinchilla loss (nats/token)",
                     "Loss vs tokens (ticks: 20 tokens/param)")
    return _save(fig, path)


def isoflop(path: Path, budgets: Sequence[float], constants: Any,
            marks: Sequence[tuple[str, float, float]] = ()) -> Path:
    """Loss against model size at fixed training FLOPs (C = 6ND), minimum marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in sorted(budgets):
        n_opt, d_opt = chinchilla_optimal(c, constants)
        n = np.geomspace(n_opt / 30, n_opt * 30, 200)
        line, = ax.plot(n, chinchilla_loss(n, c / (6 * n), constants), label=f"{c:.1e} FLOPs")
        ax.plot(n_opt, chinchilla_loss(n_opt, d_opt, constants), "*", color=line.get_color(),
                ms=10)
    for label, n, tokens in marks:
        ax.plot(n, chinchilla_loss(n, tokens, constants), "ko", ms=5)
        ax.annotate(label, (n, chinchilla_loss(n, tokens, constants)),
                    textcoords="offset points", xytext=(4, -12), fontsize=8)
    _finish_log_axes(ax, "parameters N", "Chinchilla loss (nats/token)",
                     "isoFLOP curves (stars: compute-optimal)")
    return _save(fig, path)


def fitted_chinchilla(path: Path, fit: Any, n: np.ndarray, d: np.ndarray,
                      loss: np.ndarray) -> Path:
    """Observed losses and the fitted law (with bootstrap band) per distinct model size."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = np.unique(n)
    if sizes.size > 8:          # many distinct sizes: group them into 6 log-spaced bins
        edges = np.geomspace(n.min(), n.max() * 1.0001, 7)
        groups = [(np.sqrt(lo * hi), (n >= lo) & (n < hi)) for lo, hi in zip(edges, edges[1:])]
    else:
        groups = [(s, n == s) for s in sizes]
    for size, sel in groups:
        if not sel.any():
            continue
        grid = np.geomspace(d[sel].min() / 2, d.max() * 20, 100)
        p = _predict_beyond_data(fit, np.full_like(grid, size), grid)
        line, = ax.plot(grid, p.value, label=f"N~{size / 1e6:.3g}M")
        ax.fill_between(grid, p.lower, p.upper, color=line.get_color(), alpha=0.2)
        ax.plot(d[sel], loss[sel], ".", color=line.get_color())
    _mark_extrapolation(ax, d)
    _finish_log_axes(ax, "training tokens D", "loss (nats/token)",
                     f"Fitted Chinchilla law (R^2 = {fit.r2:.3f}, 95% bootstrap band)", fontsize=7)
    return _save(fig, path)


def _predict_beyond_data(fit: Any, *args: np.ndarray) -> Any:
    """fit.predict over a grid that deliberately extends past the data (curves, not advice)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        return fit.predict(*args)


def _mark_extrapolation(ax: Any, d: np.ndarray) -> None:
    ax.axvline(d.max() * 10, color="grey", ls=":", label="10x largest D")


def _finish_log_axes(ax: Any, xlabel: str, ylabel: str, title: str, fontsize: int = 8) -> None:
    """Log x axis, labels, title, legend and grid."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=fontsize)
    ax.grid(alpha=0.3, which="both")


def fitted_rectified(path: Path, fit: Any, d: np.ndarray, metric: np.ndarray) -> Path:
    """Observed metric and the fitted rectified (or power) law with its bootstrap band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.geomspace(d.min() / 2, d.max() * 1000, 200)
    p = _predict_beyond_data(fit, grid)
    ax.plot(grid, p.value, label=f"{fit.law} law")
    ax.fill_between(grid, p.lower, p.upper, alpha=0.2, label="95% bootstrap band")
    ax.plot(d, metric, "ko", ms=4, label="data")
    _mark_extrapolation(ax, d)
    _finish_log_axes(ax, "tokens D", "metric", f"Fitted {fit.law} law (R^2 = {fit.r2:.3f})")
    return _save(fig, path)


def cost_breakdown(path: Path, plan: BudgetPlan) -> Path:
    """Horizontal bars per line item (red: does not fit), with the budget as a line."""
    plt = _plt()
    items = plan.items
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(items) + 1.5))
    y = np.arange(len(items))[::-1]
    colors = ["tab:blue" if ok else "tab:red" for ok in plan.fits]
    ax.barh(y, [i.usd / 1e6 for i in items], color=colors)
    ax.set_yticks(y, [i.name for i in items], fontsize=8)
    ax.axvline(plan.inputs.budget_usd / 1e6, color="k", ls="--", label="budget")
    ax.set_xlabel("$ million")
    ax.set_title(f"Cost breakdown: ${plan.total_usd / 1e6:,.2f}M of "
                 f"${plan.inputs.budget_usd / 1e6:,.2f}M")
    ax.legend(fontsize=8)
    return _save(fig, path)
