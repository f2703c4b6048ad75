"""Rotary position embeddings (RoPE), with Llama 3 frequency scaling.

Convention: the "rotate half" layout used by HF Llama checkpoints — dimension ``j`` of a head
is paired with ``j + head_dim/2`` (GGUF files store q/k rows permuted for the interleaved
layout; the GGUF loader undoes that, so every weight here is in rotate-half layout).
"""
from __future__ import annotations

import math

import torch

from fastsynth.model.config import LlamaConfig


def inverse_frequencies(config: LlamaConfig) -> torch.Tensor:
    """``(head_dim/2,)`` float32 angular frequencies ``theta^(-2j/head_dim)``, Llama-3 scaled.

    Llama 3 scaling: with wavelength ``w = 2*pi/f`` and ``L`` = original context, frequencies
    with ``w < L/high_freq_factor`` are kept, those with ``w > L/low_freq_factor`` divided by
    ``factor``, and those between blended linearly in ``L/w``.
    """
    d = config.head_dim
    inv = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    s = config.rope_scaling
    if s is None:
        return inv
    low_wavelen = s.original_max_position / s.low_freq_factor
    high_wavelen = s.original_max_position / s.high_freq_factor
    wavelen = 2 * math.pi / inv
    smooth = (s.original_max_position / wavelen - s.low_freq_factor) \
        / (s.high_freq_factor - s.low_freq_factor)
    blended = (1 - smooth) * inv / s.factor + smooth * inv
    out = torch.where(wavelen > low_wavelen, inv / s.factor, blended)
    return torch.where(wavelen < high_wavelen, inv, out)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape ``positions.shape + (head_dim,)`` (angles computed in float32)."""
    angles = positions.to(torch.float32)[..., None] * inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape ``(..., T, H, head_dim)``; cos/sin are ``(..., T, head_dim)``."""
    cos = cos.unsqueeze(-2)
    sin = sin.unsqueeze(-2)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotated * sin
