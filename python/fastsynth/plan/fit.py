"""Fit the Chinchilla law to your own runs (Hoffmann et al. 2022 / Besiroglu et al. 2024).

Procedure (Hoffmann's Approach 3 as Epoch AI replicated it): parametrise
``log L = LSE(a - alpha log N, b - beta log D, e)`` with ``A = e^a, B = e^b, E = e^e``;
minimise the Huber loss (``delta = 1e-3``) of the residuals in log loss with L-BFGS from
every point of the 4,500-start grid ``alpha, beta in {0, .5, ..., 2}``,
``e in {-1, -.5, ..., 1}``, ``a, b in {0, 5, ..., 25}``; keep the best. All starts run
together in :func:`fastsynth.plan.lbfgs.minimize_batched` with an analytic gradient.

Uncertainty: a pairs bootstrap — resample the points with replacement, refit from the
best full-data solution and the next few distinct grid optima — gives parameter
intervals and prediction intervals (percentiles of the refits' predictions).
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastsynth.errors import ConfigError
from fastsynth.plan.checks import count as check_count
from fastsynth.plan.checks import finite_array, interval_level, positive, positive_array, same_length
from fastsynth.plan.constants import ChinchillaConstants
from fastsynth.plan.lbfgs import STATUS_TEXT, minimize_batched
from fastsynth.plan import lbfgs
from fastsynth.plan.prediction import Prediction, check_extrapolation, percentile_interval

HUBER_DELTA = 1e-3       # Hoffmann et al.: Huber delta 1e-3 on log-loss residuals
# Stopping: the Huber sum is ~1e-3 by construction, so scipy's test (reduction below
# 2.2e-9 * max(|f|, 1)) stops in flat valleys with alpha off by ~0.01 and bootstrap refits
# that never leave their start. Test the reduction relative to |f| instead, floored at
# 1e-8 per point (the Huber value of a ~1.4e-4 log-loss residual) so that noise-free
# data, where f -> 0, still stop.
FTOL, GTOL, F_SCALE_PER_POINT = 1e-9, 1e-10, 1e-8
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


def start_grid() -> np.ndarray:
    """The 4,500 starts as rows ``(a, b, e, alpha, beta)`` (6 x 6 x 5 x 5 x 5 values)."""
    ab = np.arange(0.0, 25.1, 5.0)                 # a, b in {0, 5, ..., 25}: 6 values each
    e = np.arange(-1.0, 1.01, 0.5)                 # 5 values
    alpha_beta = np.arange(0.0, 2.01, 0.5)         # 5 values each
    grid = np.array(list(itertools.product(ab, ab, e, alpha_beta, alpha_beta)))
    return grid


def _objective(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
               weights: np.ndarray | None, delta: float = HUBER_DELTA):
    """``fun(x, rows) -> (f, g)`` for the batched optimiser; x rows are (a, b, e, alpha, beta).

    ``f`` is the Huber sum of ``LSE(a - alpha log N, b - beta log D, e) - log L`` over
    the points (times per-row point ``weights`` for the bootstrap). The three exponentials
    are taken without max-subtraction: over the grid and any sane iterate they stay far
    from float64 overflow (e**709), and a step that overflows gives a non-finite ``f``,
    which the line search rejects. Rows go through in blocks so that the ~20 temporaries
    per block stay in cache (a 4,500 x 250 temporary is 9 MB; a block is 0.5 MB).
    """
    block = max(1, 65536 // max(1, log_n.size))

    def part(x: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        t1 = np.exp(x[:, 0:1] - x[:, 3:4] * log_n)
        t2 = np.exp(x[:, 1:2] - x[:, 4:5] * log_d)
        w3 = np.exp(x[:, 2:3])
        s = t1 + t2
        s += w3
        r = np.log(s)
        r -= log_l
        c = np.clip(r, -delta, delta)
        r -= 0.5 * c
        h = c * r                     # Huber: c (r - c/2) with c = clip(r, -delta, delta)
        if w is not None:
            h *= w
            c *= w
        c /= s                        # Huber' / s, shared by all three softmax weights
        g = np.empty_like(x)
        t1 *= c
        t2 *= c
        g[:, 0] = t1.sum(axis=1)
        g[:, 1] = t2.sum(axis=1)
        g[:, 2] = c.sum(axis=1) * w3[:, 0]
        g[:, 3] = -(t1 @ log_n)
        g[:, 4] = -(t2 @ log_d)
        return h.sum(axis=1), g

    def fun(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = np.empty(len(x))
        g = np.empty_like(x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for i in range(0, len(x), block):
                sl = slice(i, i + block)
                w = None if weights is None else weights[rows[sl]]
                f[sl], g[sl] = part(x[sl], w)
        return f, g

    return fun


def _to_constants(x: np.ndarray) -> ChinchillaConstants:
    a, b, e, alpha, beta = (float(v) for v in x)
    return ChinchillaConstants(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)),
                               alpha=alpha, beta=beta, name="fit")


def _predict_raw(x: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Loss for parameter rows ``x`` (k, 5) at points (m,): shape (k, m)."""
    a, b, e, alpha, beta = (x[:, i:i + 1] for i in range(5))
    return np.exp(e) + np.exp(a - alpha * np.log(n)) + np.exp(b - beta * np.log(d))


@dataclass
class ChinchillaFit:
    """Result of :func:`fit_chinchilla`.

    ``constants`` plugs into :func:`fastsynth.plan.chinchilla_loss` and friends.
    ``r2`` is computed on the loss itself (not its log). ``converged`` is True only when
    the best start stopped on the gradient or relative-reduction test; otherwise
    ``message`` says why it stopped, and the parameters should not be trusted.
    """

    constants: ChinchillaConstants
    r2: float
    objective: float
    converged: bool
    message: str
    n_points: int
    n_starts: int
    n_starts_at_best: int           # starts that reached the best objective (to 1e-6 rel.)
    max_n_params: float
    max_n_tokens: float
    bootstrap: np.ndarray = field(repr=False)      # (n_boot, 5) rows (a, b, e, alpha, beta)
    bootstrap_converged: float = 1.0               # share of bootstrap refits that converged
    x: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(5))

    def params(self) -> dict[str, float]:
        return self.constants.as_dict()

    def param_intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Bootstrap percentile interval per parameter (E, A, B, alpha, beta)."""
        interval_level(level)
        if self.bootstrap.size == 0:
            return {k: (float("nan"), float("nan")) for k in PARAM_NAMES}
        bs = self.bootstrap
        cols = {"E": np.exp(bs[:, 2]), "A": np.exp(bs[:, 0]), "B": np.exp(bs[:, 1]),
                "alpha": bs[:, 3], "beta": bs[:, 4]}
        q = [(1 - level) / 2, (1 + level) / 2]
        return {k: (float(np.quantile(v, q[0])), float(np.quantile(v, q[1])))
                for k, v in cols.items()}

    def predict(self, n_params: Any, n_tokens: Any, level: float = 0.95) -> Prediction:
        """Predicted loss at ``(n_params, n_tokens)`` with a bootstrap interval.

        Warns (:class:`ExtrapolationWarning`) and sets ``extrapolated`` when a point lies
        more than 10x past the largest observed N or D.
        """
        n = positive_array("n_params", n_params)
        d = positive_array("n_tokens", n_tokens)
        n, d = np.broadcast_arrays(n, d)
        point = _predict_raw(self.x[None, :], n, d)[0]
        draws = _predict_raw(self.bootstrap, n, d) if self.bootstrap.size else None
        lower, upper = percentile_interval(draws, level, like=point)
        factor, extrapolated = check_extrapolation(
            {"n_params": (n, self.max_n_params), "n_tokens": (d, self.max_n_tokens)})
        return Prediction(value=point, lower=lower, upper=upper, level=level,
                          extrapolation_factor=factor, extrapolated=extrapolated)


def fit_chinchilla(n_params: Any, n_tokens: Any, loss: Any, *, n_bootstrap: int = 200,
                   bootstrap_starts: int = 4, seed: int = 0, delta: float = HUBER_DELTA,
                   starts: np.ndarray | None = None, max_iter: int = 2000) -> ChinchillaFit:
    """Fit ``L(N, D) = E + A/N**alpha + B/D**beta`` to observed ``(N, D, loss)`` points.

    Args:
        n_params, n_tokens, loss: equal-length 1-D sequences; all finite and > 0
            (loss in nats/token). At least 5 points (the law has 5 parameters).
        n_bootstrap: bootstrap refits for intervals (0 disables them).
        bootstrap_starts: starts per bootstrap refit: the best full-data optimum plus the
            next distinct grid optima (cheap, since they start near the answer).
        starts: override the 4,500-point grid, rows ``(a, b, e, alpha, beta)``.
    Returns:
        :class:`ChinchillaFit`; check ``converged`` before trusting it.
    """
    n = positive_array("n_params", n_params)
    d = positive_array("n_tokens", n_tokens)
    lo = positive_array("loss", loss)
    count = same_length(n_params=n, n_tokens=d, loss=lo)
    n_bootstrap = check_count("n_bootstrap", n_bootstrap)
    bootstrap_starts = check_count("bootstrap_starts", bootstrap_starts, minimum=1)
    seed = check_count("seed", seed)
    max_iter = check_count("max_iter", max_iter, minimum=1)
    delta = positive("delta", delta)
    if starts is not None:
        try:
            starts = np.asarray(starts, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError("starts: expected numbers, rows (a, b, e, alpha, beta)") from None
        if starts.ndim != 2 or starts.shape[1] != 5 or len(starts) < 1:
            raise ConfigError(f"starts: expected rows (a, b, e, alpha, beta), shape (k, 5) with "
                              f"k >= 1, got shape {starts.shape}")
        finite_array("starts", starts.ravel())
    if count < 5:
        raise ConfigError(f"fit_chinchilla: {count} points cannot determine the law's 5 "
                          f"parameters (E, A, B, alpha, beta); give at least 5")
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(lo)
    x0 = start_grid() if starts is None else np.asarray(starts, dtype=np.float64)
    res = minimize_batched(_objective(log_n, log_d, log_l, None, delta), x0,
                           max_iter=max_iter, ftol=FTOL, f_scale=F_SCALE_PER_POINT * count,
                           gtol=GTOL)
    fin = np.where(np.isfinite(res.fun), res.fun, np.inf)
    best = int(np.argmin(fin))
    x_best = res.x[best]
    f_best = float(fin[best])
    at_best = int(np.sum(fin <= f_best + 1e-6 * max(abs(f_best), 1e-12)))
    converged = bool(res.status[best] in (lbfgs.GTOL, lbfgs.FTOL))
    pred = _predict_raw(x_best[None, :], n, d)[0]
    r2 = float(1.0 - np.sum((lo - pred) ** 2) / np.sum((lo - lo.mean()) ** 2))

    boot = np.zeros((0, 5))
    boot_ok = 1.0
    if n_bootstrap > 0:
        # Distinct optima (rounded) in order of objective: the refits' starting points.
        order = np.argsort(fin)
        seeds: list[np.ndarray] = []
        for i in order:
            if not np.isfinite(fin[i]):
                break
            if all(np.abs(res.x[i] - s).max() > 1e-3 for s in seeds):
                seeds.append(res.x[i])
            if len(seeds) >= max(1, bootstrap_starts):
                break
        k = len(seeds)
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(count, np.full(count, 1.0 / count), size=n_bootstrap)
        weights = np.repeat(counts.astype(np.float64), k, axis=0)    # (n_boot*k, count)
        xb0 = np.tile(np.array(seeds), (n_bootstrap, 1))
        rb = minimize_batched(_objective(log_n, log_d, log_l, weights, delta), xb0,
                              max_iter=max_iter, ftol=FTOL,
                              f_scale=F_SCALE_PER_POINT * count, gtol=GTOL)
        fb = np.where(np.isfinite(rb.fun), rb.fun, np.inf).reshape(n_bootstrap, k)
        pick = np.argmin(fb, axis=1)
        idx = np.arange(n_bootstrap) * k + pick
        boot = rb.x[idx]
        boot_ok = float(np.mean(np.isin(rb.status[idx], (lbfgs.GTOL, lbfgs.FTOL))))
    message = STATUS_TEXT[int(res.status[best])]
    if not converged:
        warnings.warn(f"fit_chinchilla did not converge: {message}; the parameters are "
                      f"the best found, not an optimum", RuntimeWarning, stacklevel=2)
    return ChinchillaFit(constants=_to_constants(x_best), r2=r2, objective=f_best,
                         converged=converged, message=message, n_points=count,
                         n_starts=len(x0), n_starts_at_best=at_best,
                         max_n_params=float(n.max()), max_n_tokens=float(d.max()),
                         bootstrap=boot, bootstrap_converged=boot_ok, x=x_best.copy())
