"""Llama-family model configuration and the preset registry.

One dataclass describes every model this package builds (training and generation). Presets
carry the published shapes; ``num_params()`` is exact (it counts what :class:`Llama` allocates).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fastsynth.errors import ConfigError


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3 RoPE frequency scaling (Llama 3.1 report): long wavelengths are divided by
    ``factor``, short ones kept, a smooth blend in between; wavelengths are measured against
    ``original_max_position`` tokens."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192


@dataclass(frozen=True)
class LlamaConfig:
    """Shape of a Llama-style decoder.

    ``hidden``: model width; ``ffn``: SwiGLU inner width; ``n_heads``/``n_kv_heads``: query and
    key/value heads (grouped-query attention, ``n_heads % n_kv_heads == 0``); ``head_dim``:
    per-head width (``n_heads * head_dim`` need not equal ``hidden``); ``vocab``: embedding rows;
    ``rope_theta``: RoPE base; ``max_seq_len``: context length in tokens; ``tied``: output
    projection shares the embedding matrix; ``norm_eps``: RMSNorm epsilon.
    """

    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_seq_len: int = 2048
    tied: bool = True
    norm_eps: float = 1e-5
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for f in ("n_layers", "hidden", "n_heads", "n_kv_heads", "head_dim", "ffn", "vocab",
                  "max_seq_len"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"LlamaConfig.{f} must be a positive integer, got {v!r}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"LlamaConfig.n_heads ({self.n_heads}) must be a multiple of "
                              f"n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ConfigError(f"LlamaConfig.head_dim must be even for RoPE, got {self.head_dim}")
        if not self.rope_theta > 0:
            raise ConfigError(f"LlamaConfig.rope_theta must be > 0, got {self.rope_theta!r}")

    @staticmethod
    def preset(name: str, **overrides: Any) -> "LlamaConfig":
        """A named configuration (see :data:`PRESETS`), with fields optionally overridden."""
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r}; known presets: {sorted(PRESETS)}")
        cfg = dataclasses.replace(PRESETS[name], name=name)
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    def replace(self, **changes: Any) -> "LlamaConfig":
        return dataclasses.replace(self, **changes)

    def num_params(self, include_embedding: bool = True) -> int:
        """Exact parameter count of :class:`fastsynth.model.Llama` built from this config.

        Per layer: q/o projections ``hidden * n_heads * head_dim`` each, k/v projections
        ``hidden * n_kv_heads * head_dim`` each, three SwiGLU matrices ``hidden * ffn``, two
        RMSNorm weights ``hidden``. Plus the final norm, the embedding and (untied) the output.
        """
        attn = 2 * self.hidden * self.n_heads * self.head_dim \
            + 2 * self.hidden * self.n_kv_heads * self.head_dim
        per_layer = attn + 3 * self.hidden * self.ffn + 2 * self.hidden
        n = self.n_layers * per_layer + self.hidden
        emb = self.vocab * self.hidden
        if include_embedding:
            n += emb
        if not self.tied:
            n += emb
        return n

    @property
    def kv_bytes_per_token(self) -> int:
        """fp32 bytes of K and V cache per token over all layers."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * 4


# Shapes from the published config.json files of each model.
PRESETS: dict[str, LlamaConfig] = {
    # Random-weight test model: 2 layers, GQA with 2 query heads per KV head.
    "tiny": LlamaConfig(n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=128,
                        vocab=512, rope_theta=10000.0, max_seq_len=256, tied=True),
    "smollm2-135m": LlamaConfig(n_layers=30, hidden=576, n_heads=9, n_kv_heads=3, head_dim=64,
                                ffn=1536, vocab=49152, rope_theta=100000.0, max_seq_len=8192,
                                tied=True, bos_token_id=1, eos_token_id=2),
    "llama-3.2-1b": LlamaConfig(n_layers=16, hidden=2048, n_heads=32, n_kv_heads=8,
                                head_dim=64, ffn=8192, vocab=128256, rope_theta=500000.0,
                                rope_scaling=RopeScaling(factor=32.0), max_seq_len=131072,
                                tied=True, bos_token_id=128000, eos_token_id=128001),
    "llama-3.2-3b": LlamaConfig(n_layers=28, hidden=3072, n_heads=24, n_kv_heads=8,
                                head_dim=128, ffn=8192, vocab=128256, rope_theta=500000.0,
                                rope_scaling=RopeScaling(factor=32.0), max_seq_len=131072,
                                tied=True, bos_token_id=128000, eos_token_id=128001),
    "llama-3.1-8b": LlamaConfig(n_layers=32, hidden=4096, n_heads=32, n_kv_heads=8,
                                head_dim=128, ffn=14336, vocab=128256, rope_theta=500000.0,
                                rope_scaling=RopeScaling(factor=8.0), max_seq_len=131072,
                                tied=False, bos_token_id=128000, eos_token_id=128001),
}
