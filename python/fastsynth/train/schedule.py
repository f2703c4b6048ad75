"""Learning-rate schedules as multipliers of the peak rate, one value per optimizer step.

``lr(step) = peak * factor(step)`` for ``step = 0 .. steps-1`` (the step about to be taken):

- warm-up: ``(step + 1) / (warmup + 1)`` for ``step < warmup`` (never exactly 0);
- ``cosine``: ``min + (1 - min) * (1 + cos(pi * p)) / 2`` with ``p`` going from 0 after the
  warm-up to 1 at the last step, so the last step runs at ``min_lr_ratio * peak``;
- ``wsd`` (warm-up, stable, decay; Hägele et al. 2024): 1 until the last
  ``decay_fraction`` of steps, then linear to ``min_lr_ratio`` at the last step;
- ``constant``: 1 after the warm-up.
"""
from __future__ import annotations

import math
from typing import Callable

from fastsynth.train.config import TrainConfig


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The multiplier ``factor(step)`` for ``torch.optim.lr_scheduler.LambdaLR``."""
    steps, warmup, low = config.steps, config.warmup_steps, config.min_lr_ratio
    decay_start = max(warmup, steps - max(1, round(config.decay_fraction * steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.schedule == "constant":
            return 1.0
        if config.schedule == "cosine":
            span = max(1, steps - warmup)
            p = min(1.0, (step - warmup + 1) / span)
            return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * p))
        if step < decay_start:
            return 1.0
        p = min(1.0, (step - decay_start + 1) / max(1, steps - decay_start))
        return 1.0 - (1.0 - low) * p

    return factor
