"""Named constant sets for the Chinchilla law and hardware defaults the planner uses.

Chinchilla's parametric law is ``L(N, D) = E + A / N**alpha + B / D**beta`` with ``N`` the
parameter count and ``D`` the number of training tokens, ``L`` in nats per token.

* ``hoffmann`` — the rounded constants printed in Hoffmann et al. (2022), eq. (10).
* ``hoffmann-unrounded`` — the same fit at full precision, as recovered by Besiroglu et al.
  (2024, "Chinchilla Scaling: A replication attempt") from the paper's released values.
* ``epoch`` — Besiroglu et al.'s refit on the data reconstructed from Hoffmann's Figure 4.

The rounded and unrounded sets give visibly different compute-optimal sizes (32.2B vs 40.4B
at 5.76e23 FLOPs), which is why both are offered.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fastsynth.errors import ConfigError


@dataclass(frozen=True)
class ChinchillaConstants:
    """Constants of ``L(N, D) = E + A / N**alpha + B / D**beta`` (loss in nats/token)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    name: str = "custom"

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}


CONSTANT_SETS: dict[str, ChinchillaConstants] = {
    "hoffmann": ChinchillaConstants(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
                                    name="hoffmann"),
    "hoffmann-unrounded": ChinchillaConstants(
        E=math.exp(0.5267228), A=math.exp(6.0073404), B=math.exp(6.0179186),
        alpha=0.33917084, beta=0.2849083, name="hoffmann-unrounded"),
    "epoch": ChinchillaConstants(E=1.8169, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
                                 name="epoch"),
}


def get_constants(constants: str | ChinchillaConstants | object = "hoffmann"
                  ) -> ChinchillaConstants:
    """Resolve a constant-set name, a :class:`ChinchillaConstants`, or a fit result.

    Anything with a ``constants`` attribute holding :class:`ChinchillaConstants` (such as
    :class:`fastsynth.plan.fit.ChinchillaFit`) is accepted, so a fitted law plugs in
    wherever a named set does.
    """
    if isinstance(constants, ChinchillaConstants):
        return constants
    inner = getattr(constants, "constants", None)
    if isinstance(inner, ChinchillaConstants):
        return inner
    if isinstance(constants, str):
        try:
            return CONSTANT_SETS[constants]
        except KeyError:
            raise ConfigError(
                f"constants: unknown set {constants!r}; choose one of "
                f"{', '.join(CONSTANT_SETS)} or pass ChinchillaConstants") from None
    raise ConfigError(f"constants: expected a name or ChinchillaConstants, got "
                      f"{type(constants).__name__}")


# NVIDIA H100 SXM dense bf16 peak (datasheet; the 1,979 TFLOP/s figure assumes 2:4 sparsity).
H100_BF16_PEAK_FLOPS = 989e12
# Strong training stacks reach 35-45% MFU on 1-8B models; 40% is the middle of that range.
DEFAULT_MFU = 0.40
