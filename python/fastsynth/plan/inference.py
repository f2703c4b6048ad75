"""Inference-aware optimum (Sardana et al. 2024, "Beyond Chinchilla-Optimal").

A model that will serve ``D_inf`` tokens should minimise its *lifetime* compute
``6 N D_train + 2 N D_inf`` (training at 6 FLOPs per parameter per token, inference at 2)
among all ``(N, D_train)`` that reach the same loss. With heavy inference demand the
optimum moves to smaller models trained on more tokens than Chinchilla's ~20 per parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fastsynth.errors import ConfigError, FastsynthError
from fastsynth.plan.checks import nonnegative, positive
from fastsynth.plan.constants import ChinchillaConstants, get_constants


@dataclass(frozen=True)
class InferenceAwarePoint:
    """An inference-aware optimum: sizes, tokens and FLOPs (training, inference, total)."""

    n_params: float
    n_tokens: float            # training tokens
    inference_tokens: float
    target_loss: float
    training_flops: float
    inference_flops: float

    @property
    def total_flops(self) -> float:
        return self.training_flops + self.inference_flops

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params


def tokens_for_loss(n_params: float, target_loss: float,
                    constants: str | ChinchillaConstants = "hoffmann") -> float:
    """Training tokens ``D`` at which a model of ``n_params`` reaches ``target_loss``.

    Inverts ``L = E + A/N**alpha + B/D**beta``; ``inf`` when ``N`` alone cannot reach it
    (``E + A/N**alpha >= target_loss``).
    """
    c = get_constants(constants)
    gap = target_loss - c.E - c.A / positive("n_params", n_params) ** c.alpha
    if gap <= 0:
        return math.inf
    return (c.B / gap) ** (1.0 / c.beta)


def inference_aware_optimal(target_loss: float, inference_tokens: float,
                            constants: str | ChinchillaConstants = "hoffmann"
                            ) -> InferenceAwarePoint:
    """Minimise ``6 N D_train + 2 N D_inf`` subject to ``L(N, D_train) = target_loss``.

    Solved numerically: along the constraint ``D_train(N)`` is explicit
    (:func:`tokens_for_loss`), so the total cost is a function of ``log N`` alone, which
    tends to infinity at both ends (``N -> N_min`` needs infinite data, ``N -> inf`` pays
    for parameters); a bounded scalar search on ``log N`` finds its minimum.
    ``inference_tokens = 0`` recovers the Chinchilla-optimal point for that loss.
    """
    from scipy.optimize import minimize_scalar

    c = get_constants(constants)
    loss = positive("target_loss", target_loss)
    d_inf = nonnegative("inference_tokens", inference_tokens)
    if loss <= c.E:
        raise ConfigError(f"target_loss: {loss:.4g} is not above the law's irreducible loss "
                          f"E = {c.E:.4g}; no finite model reaches it")
    # Smallest N that can reach the loss with infinite data.
    log_n_min = math.log(c.A / (loss - c.E)) / c.alpha

    def log_cost(log_n: float) -> float:
        n = math.exp(log_n)
        d = tokens_for_loss(n, loss, c)
        return math.log(6.0 * n * d + 2.0 * n * d_inf) if math.isfinite(d) else math.inf

    # The optimum lies well inside (N_min, N_min * 1e8): at 1e8 * N_min the data term is
    # negligible and the cost grows linearly in N; the search is in log N, so the wide
    # bracket costs a few extra iterations only.
    lo, hi = log_n_min + 1e-9, log_n_min + math.log(1e8)
    res = minimize_scalar(log_cost, bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-10, "maxiter": 500})
    if not res.success or not math.isfinite(res.fun):
        raise FastsynthError(f"inference_aware_optimal did not converge: {res.message}")
    n = math.exp(res.x)
    if res.x > hi - 1e-3 or res.x < lo + 1e-3:
        raise FastsynthError("inference_aware_optimal: the optimum sits on the search "
                             "bracket's edge; the inputs are outside the law's useful range")
    d = tokens_for_loss(n, loss, c)
    return InferenceAwarePoint(n_params=n, n_tokens=d, inference_tokens=d_inf,
                               target_loss=loss, training_flops=6.0 * n * d,
                               inference_flops=2.0 * n * d_inf)
