"""Plan: how big a model, how many tokens, what it costs — and laws fitted to your runs.

* :mod:`~fastsynth.plan.laws` — Chinchilla loss and compute-optimum, training FLOPs,
  SynthLLM's rectified law and the plain power law.
* :mod:`~fastsynth.plan.inference` — the inference-aware optimum (Sardana et al. 2024).
* :mod:`~fastsynth.plan.fit` / :mod:`~fastsynth.plan.rectified` — fitting with bootstrap
  intervals; predictions warn past 10x the observed scale.
* :mod:`~fastsynth.plan.budget` — dollars and GPU-hours per line item, per phase.
"""
from __future__ import annotations

from fastsynth.plan.constants import CONSTANT_SETS, ChinchillaConstants, get_constants
from fastsynth.plan.inference import (InferenceAwarePoint, inference_aware_optimal,
                                      tokens_for_loss)
from fastsynth.plan.laws import (chinchilla_loss, chinchilla_optimal, power_law,
                                 prelearned_tokens, rectified_law, tokens_per_param,
                                 training_flops, training_flops_per_token)
from fastsynth.plan.fit import ChinchillaFit, fit_chinchilla
from fastsynth.plan.prediction import ExtrapolationWarning, Prediction


def __getattr__(name: str):
    # The rectified fit and the budget planner import scipy; load them on first use so
    # that `import fastsynth.plan` needs numpy only.
    if name in ("fit_rectified", "RectifiedFit"):
        from fastsynth.plan import rectified
        return getattr(rectified, name)
    if name == "budget":
        import importlib
        return importlib.import_module("fastsynth.plan.budget")
    raise AttributeError(f"module 'fastsynth.plan' has no attribute {name!r}")


__all__ = ["CONSTANT_SETS", "ChinchillaConstants", "get_constants", "chinchilla_loss",
           "chinchilla_optimal", "tokens_per_param", "training_flops",
           "training_flops_per_token", "rectified_law", "power_law", "prelearned_tokens",
           "inference_aware_optimal", "InferenceAwarePoint", "tokens_for_loss",
           "fit_chinchilla", "ChinchillaFit", "fit_rectified", "RectifiedFit",
           "ExtrapolationWarning", "Prediction"]
