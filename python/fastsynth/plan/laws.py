"""Scaling laws: Chinchilla loss and optimum, training FLOPs, SynthLLM's rectified law.

Units throughout: ``n_params`` = parameters, ``n_tokens`` = training tokens, ``flops`` =
floating-point operations (multiply and add counted separately), loss in nats/token.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastsynth.errors import ConfigError
from fastsynth.plan.checks import positive, positive_array
from fastsynth.plan.constants import ChinchillaConstants, get_constants


def _scalar_or_array(x: np.ndarray, scalar: bool) -> Any:
    return float(x) if scalar else x


def chinchilla_loss(n_params: Any, n_tokens: Any,
                    constants: str | ChinchillaConstants = "hoffmann") -> Any:
    """``L(N, D) = E + A / N**alpha + B / D**beta`` in nats/token.

    ``n_params`` and ``n_tokens`` may be scalars (a float is returned) or arrays that
    broadcast (an array is returned). Both must be > 0.
    """
    c = get_constants(constants)
    scalar = np.ndim(n_params) == 0 and np.ndim(n_tokens) == 0
    n = positive_array("n_params", np.ravel(n_params)).reshape(np.shape(n_params))
    d = positive_array("n_tokens", np.ravel(n_tokens)).reshape(np.shape(n_tokens))
    loss = c.E + c.A / n ** c.alpha + c.B / d ** c.beta
    return _scalar_or_array(np.asarray(loss), scalar)


def chinchilla_optimal(flops: float, constants: str | ChinchillaConstants = "hoffmann"
                       ) -> tuple[float, float]:
    """Compute-optimal ``(n_params, n_tokens)`` for a training budget of ``flops``.

    Minimises ``L(N, D)`` subject to ``C = 6 N D`` in closed form (Hoffmann et al. 2022,
    Appendix D.2): ``N_opt = G (C/6)**(beta/(alpha+beta))``, ``D_opt = (C/6)**(alpha/(alpha+beta)) / G``
    with ``G = (alpha A / (beta B))**(1/(alpha+beta))``.
    """
    c = get_constants(constants)
    budget = positive("flops", flops)
    s = c.alpha + c.beta
    g = (c.alpha * c.A / (c.beta * c.B)) ** (1.0 / s)
    n_opt = g * (budget / 6.0) ** (c.beta / s)
    d_opt = (budget / 6.0) ** (c.alpha / s) / g
    return float(n_opt), float(d_opt)


def tokens_per_param(n_params: float, n_tokens: float) -> float:
    """Training tokens per parameter, ``D / N`` (Chinchilla-optimal is ~20)."""
    return positive("n_tokens", n_tokens) / positive("n_params", n_params)


def training_flops(n_params: float, n_tokens: float) -> float:
    """Training compute ``C = 6 N D`` (forward 2N + backward 4N FLOPs per token)."""
    return 6.0 * positive("n_params", n_params) * positive("n_tokens", n_tokens)


def _model_field(model: Any, *names: str) -> Any:
    for name in names:
        if isinstance(model, dict) and name in model:
            return model[name]
        if not isinstance(model, dict) and hasattr(model, name):
            return getattr(model, name)
    return None


def training_flops_per_token(model: Any = None, *, seq_len: int, n_params: float | None = None,
                             n_layers: int | None = None, n_heads: int | None = None,
                             head_dim: int | None = None, causal_halving: bool = False) -> float:
    """Training FLOPs per token, ``6 N + 12 L H hd T`` (PaLM, Chowdhery et al. 2022, App. B).

    ``6 N`` is the weight matmuls (forward 2N, backward 4N); ``12 L H hd T`` is the
    attention score and value matmuls (QK^T and AV: 2 matmuls x 2 FLOPs per MAC x 3 for
    forward + backward = 12, times the ``T`` keys each query sees), summed over ``L``
    layers of ``H`` query heads of size ``hd``.

    Causal convention: by default (``causal_halving=False``) the attention term is **not**
    halved, as in PaLM's MFU definition — every query is charged for all ``T`` keys, which
    is what a dense kernel computes. With ``causal_halving=True`` the term becomes
    ``6 L H hd T`` (only the ~T/2 unmasked keys per query, which a causal flash kernel
    actually computes); MFU numbers are then lower for the same wall time.

    ``model`` may be any object or dict with ``n_layers``, ``n_heads``, ``head_dim`` (or
    ``dim``/``hidden_size`` from which ``head_dim = dim / n_heads``) and ``num_params()``
    or ``n_params`` — e.g. :class:`fastsynth.model.LlamaConfig` — so this needs no torch.
    Keyword arguments override fields read from ``model``. ``N`` counts every parameter
    the config reports; with untied embeddings the input-embedding lookup is not a matmul,
    so 6N overstates by ``6 * vocab * dim`` — pass ``n_params`` to choose otherwise.
    """
    if model is not None:
        if n_params is None:
            np_attr = _model_field(model, "num_params", "n_params")
            n_params = np_attr() if callable(np_attr) else np_attr
        n_layers = n_layers if n_layers is not None else _model_field(model, "n_layers",
                                                                       "num_hidden_layers")
        n_heads = n_heads if n_heads is not None else _model_field(model, "n_heads",
                                                                   "num_attention_heads")
        if head_dim is None:
            head_dim = _model_field(model, "head_dim")
            dim = _model_field(model, "dim", "hidden", "hidden_size", "d_model")
            if head_dim is None and dim is not None and n_heads:
                head_dim = dim / n_heads
    for name, value in (("n_params", n_params), ("n_layers", n_layers), ("n_heads", n_heads),
                        ("head_dim", head_dim)):
        if value is None:
            raise ConfigError(f"training_flops_per_token: {name} is missing (pass it or a "
                              f"model config that has it)")
    n = positive("n_params", n_params)
    attn = 12.0 * positive("n_layers", n_layers) * positive("n_heads", n_heads) \
        * positive("head_dim", head_dim) * positive("seq_len", seq_len)
    return 6.0 * n + (attn / 2.0 if causal_halving else attn)


def rectified_law(n_tokens: Any, B: float, D_l: float, beta: float, E: float) -> Any:
    """SynthLLM's rectified law ``L(D) = B / (D_l + D**beta) + E`` (Lin et al. 2024).

    ``L`` is an error rate (or loss), ``D`` the (synthetic) tokens. Units: ``D_l`` adds to
    ``D**beta``, so it is measured in *token**beta*; the "pre-learned" data it stands for
    is ``D_l**(1/beta)`` tokens (see :func:`prelearned_tokens`).
    """
    d = np.asarray(n_tokens, dtype=np.float64)
    out = B / (D_l + d ** beta) + E
    return float(out) if np.ndim(n_tokens) == 0 else out


def prelearned_tokens(D_l: float, beta: float) -> float:
    """Tokens ``D_l**(1/beta)`` that the rectified law's ``D_l`` term is worth."""
    return float(positive("D_l", D_l) ** (1.0 / positive("beta", beta)))


def power_law(n_tokens: Any, B: float, beta: float, E: float = 0.0) -> Any:
    """Plain power law ``L(D) = B / D**beta + E`` (``E = 0``: a pure power law)."""
    d = np.asarray(n_tokens, dtype=np.float64)
    out = B / d ** beta + E
    return float(out) if np.ndim(n_tokens) == 0 else out
