"""Fit SynthLLM's rectified law ``L(D) = B / (D_l + D**beta) + E`` (or a plain power law).

Qin et al. (2025) fit this law (from Lin et al. 2024) to error rate against synthetic
tokens ``D``. With ``beta`` and ``D_l`` fixed the law is linear in ``B`` and ``E``, so the
fit profiles those two out by least squares over a grid of ``(beta, D_l)`` and then
polishes all four parameters with ``scipy.optimize.least_squares``. Residuals are in the
metric's own units (unweighted least squares).

Uncertainty: with a handful of points (SynthLLM has 7), resampling points would often
leave fewer distinct points than parameters, so the bootstrap resamples *residuals*
(centred, inflated by ``sqrt(n / (n - p))``) around the fitted curve and refits.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fastsynth.errors import ConfigError
from fastsynth.plan.checks import count as check_count
from fastsynth.plan.checks import finite_array, interval_level, positive_array, same_length
from fastsynth.plan.laws import prelearned_tokens
from fastsynth.plan.prediction import Prediction, check_extrapolation, percentile_interval

Law = Literal["rectified", "power"]


def _model(theta: np.ndarray, d: np.ndarray) -> np.ndarray:
    log_b, log_dl, beta, e = theta
    return np.exp(log_b) / (np.exp(log_dl) + d ** beta) + e


@dataclass
class RectifiedFit:
    """Result of :func:`fit_rectified`. ``D_l`` is in token**beta units (0 for "power")."""

    law: Law
    B: float
    D_l: float
    beta: float
    E: float
    r2: float
    converged: bool
    message: str
    n_points: int
    max_n_tokens: float
    bootstrap: np.ndarray = field(repr=False)     # (n_boot, 4) rows (log B, log D_l, beta, E)

    @property
    def prelearned_tokens(self) -> float:
        """``D_l**(1/beta)``: the tokens the ``D_l`` term is worth (0 for a power law)."""
        return prelearned_tokens(self.D_l, self.beta) if self.D_l > 0 else 0.0

    def params(self) -> dict[str, float]:
        return {"B": self.B, "D_l": self.D_l, "beta": self.beta, "E": self.E}

    def param_intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Bootstrap percentile interval per parameter (B, D_l, beta, E)."""
        interval_level(level)
        bs = self.bootstrap
        if bs.size == 0:
            return {k: (float("nan"), float("nan")) for k in ("B", "D_l", "beta", "E")}
        cols = {"B": np.exp(bs[:, 0]), "D_l": np.exp(bs[:, 1]) if self.law == "rectified"
                else np.zeros(len(bs)), "beta": bs[:, 2], "E": bs[:, 3]}
        q = [(1 - level) / 2, (1 + level) / 2]
        return {k: (float(np.quantile(v, q[0])), float(np.quantile(v, q[1])))
                for k, v in cols.items()}

    def predict(self, n_tokens: Any, level: float = 0.95) -> Prediction:
        """Predicted metric at ``n_tokens``; warns past 10x the largest observed D."""
        d = positive_array("n_tokens", n_tokens)
        theta = np.array([np.log(self.B), np.log(self.D_l) if self.D_l > 0 else -np.inf,
                          self.beta, self.E])
        point = _model(theta, d)
        draws = np.array([_model(t, d) for t in self.bootstrap]) if self.bootstrap.size else None
        lower, upper = percentile_interval(draws, level, like=point)
        factor, extrapolated = check_extrapolation({"n_tokens": (d, self.max_n_tokens)})
        return Prediction(value=point, lower=lower, upper=upper, level=level,
                          extrapolation_factor=factor, extrapolated=extrapolated)


def _profile_start(d: np.ndarray, y: np.ndarray, law: Law) -> np.ndarray:
    """Best grid point over (beta, D_l) with B, E solved by linear least squares."""
    best, best_sse = None, np.inf
    betas = np.linspace(0.05, 1.5, 59)
    # D_l relative to the observed D**beta range: 0 (power law) to 100x its largest value.
    rel = [0.0] if law == "power" else [0.0, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100]
    for beta in betas:
        db = d ** beta
        for r in rel:
            dl = r * db.max()
            x = 1.0 / (dl + db)
            design = np.column_stack([x, np.ones_like(x)])
            (b, e), *_ = np.linalg.lstsq(design, y, rcond=None)
            if b <= 0:
                continue
            sse = float(np.sum((design @ np.array([b, e]) - y) ** 2))
            if sse < best_sse:
                best_sse = sse
                best = np.array([np.log(b), np.log(dl) if dl > 0 else np.log(1e-9 * db.min()),
                                 beta, e])
    if best is None:
        raise ConfigError("fit_rectified: the metric does not decrease with tokens anywhere "
                          "on the start grid (B would be <= 0); the law does not apply")
    return best


def _jac(theta: np.ndarray, d: np.ndarray) -> np.ndarray:
    """d model / d (log B, log D_l, beta, E), shape (n, 4)."""
    log_b, log_dl, beta, _ = theta
    db = d ** beta
    den = np.exp(log_dl) + db
    top = np.exp(log_b) / den
    return np.column_stack([top, -top * np.exp(log_dl) / den, -top * db * np.log(d) / den,
                            np.ones_like(d)])


def _polish(theta0: np.ndarray, d: np.ndarray, y: np.ndarray, law: Law):
    from scipy.optimize import least_squares

    if law == "power":
        fixed = theta0[1]

        def resid(t):
            return _model(np.array([t[0], fixed, t[1], t[2]]), d) - y
        res = least_squares(resid, theta0[[0, 2, 3]], method="lm", xtol=1e-12, ftol=1e-12,
                            max_nfev=2000, jac=lambda t: _jac(np.array(
                                [t[0], fixed, t[1], t[2]]), d)[:, [0, 2, 3]])
        theta = np.array([res.x[0], fixed, res.x[1], res.x[2]])
    else:
        res = least_squares(lambda t: _model(t, d) - y, theta0, method="lm", xtol=1e-12,
                            ftol=1e-12, max_nfev=2000, jac=lambda t: _jac(t, d))
        theta = res.x
    return theta, bool(res.success and np.all(np.isfinite(theta))), str(res.message)


def fit_rectified(n_tokens: Any, metric: Any, *, law: Law = "rectified", n_bootstrap: int = 200,
                  seed: int = 0) -> RectifiedFit:
    """Fit ``metric = B / (D_l + D**beta) + E`` (``law="power"``: ``D_l = 0``) to points.

    Args:
        n_tokens: tokens ``D`` per point (> 0). metric: error rate or loss (finite).
        law: "rectified" (4 parameters) or "power" (3: ``B / D**beta + E``).
        n_bootstrap: residual-bootstrap refits for intervals (0 disables them).
    """
    if law not in ("rectified", "power"):
        raise ConfigError(f"law: expected 'rectified' or 'power', got {law!r}")
    d = positive_array("n_tokens", n_tokens)
    y = finite_array("metric", metric)
    count = same_length(n_tokens=d, metric=y)
    n_bootstrap = check_count("n_bootstrap", n_bootstrap)
    seed = check_count("seed", seed)
    n_par = 4 if law == "rectified" else 3
    if count < n_par:
        raise ConfigError(f"fit_rectified: {count} points cannot determine the {law} law's "
                          f"{n_par} parameters; give at least {n_par}")
    slope = np.polyfit(np.log(d), y, 1)[0]
    if not slope < 0:
        raise ConfigError("fit_rectified: the metric does not decrease with tokens (its "
                          "least-squares slope against log D is >= 0); the law does not apply")
    theta, ok, message = _polish(_profile_start(d, y, law), d, y, law)
    fitted = _model(theta, d)
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = float(1.0 - np.sum((y - fitted) ** 2) / sst) if sst > 0 else float("nan")
    boot = np.zeros((0, 4))
    if n_bootstrap > 0 and count > n_par:
        rng = np.random.default_rng(seed)
        resid = y - fitted
        resid = (resid - resid.mean()) * np.sqrt(count / (count - n_par))
        rows = []
        for _ in range(n_bootstrap):
            yb = fitted + rng.choice(resid, size=count, replace=True)
            tb, okb, _ = _polish(theta, d, yb, law)
            if okb:
                rows.append(tb)
        boot = np.array(rows) if rows else boot
    if not ok:
        warnings.warn(f"fit_rectified did not converge: {message}", RuntimeWarning,
                      stacklevel=2)
    d_l = float(np.exp(theta[1])) if law == "rectified" else 0.0
    return RectifiedFit(law=law, B=float(np.exp(theta[0])), D_l=d_l, beta=float(theta[2]),
                        E=float(theta[3]), r2=r2, converged=ok, message=message,
                        n_points=count, max_n_tokens=float(d.max()), bootstrap=boot)
