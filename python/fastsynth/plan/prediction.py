"""Predictions from fitted laws: point value, interval, and the extrapolation check."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# Past 10x the largest observed scale a fitted law is an extrapolation the fit's data
# cannot vouch for (SynthLLM's "3B needs ~4T" sits 60-900x past its largest point).
EXTRAPOLATION_LIMIT = 10.0


class ExtrapolationWarning(UserWarning):
    """A prediction lies more than 10x past the largest observed N or D."""


@dataclass(frozen=True)
class Prediction:
    """Predicted values with a bootstrap percentile interval (arrays, one per point).

    ``extrapolation_factor`` is, per point, the largest ratio of a requested N or D to the
    largest observed one; ``extrapolated`` is True where it exceeds 10.
    """

    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    extrapolation_factor: np.ndarray
    extrapolated: np.ndarray

    @property
    def any_extrapolated(self) -> bool:
        return bool(np.any(self.extrapolated))


def percentile_interval(draws: np.ndarray | None, level: float, like: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` interval over axis 0 of ``draws`` (k, m); NaN without draws."""
    from fastsynth.plan.checks import interval_level
    level = interval_level(level)
    if draws is None or len(draws) == 0:
        nan = np.full_like(like, np.nan, dtype=np.float64)
        return nan, nan.copy()
    q = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return q[0], q[1]


def check_extrapolation(axes: dict[str, tuple[np.ndarray, float]]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Extrapolation factor per point over named axes ``{name: (requested, max_observed)}``.

    Warns once, naming the axis and the worst factor, when any point is past 10x.
    """
    factor = None
    worst: list[str] = []
    for name, (values, observed_max) in axes.items():
        f = np.asarray(values, dtype=np.float64) / observed_max
        if np.any(f > EXTRAPOLATION_LIMIT):
            worst.append(f"{name} up to {f.max():.3g}x the largest observed "
                         f"({observed_max:.3g})")
        factor = f if factor is None else np.maximum(factor, f)
    assert factor is not None
    extrapolated = factor > EXTRAPOLATION_LIMIT
    if worst:
        warnings.warn("prediction extrapolates more than 10x past the fitted data: "
                      + "; ".join(worst) + " — treat it as a guess, not a fit",
                      ExtrapolationWarning, stacklevel=3)
    return factor, extrapolated
