"""Llama-family model configuration and the preset registry.

One dataclass describes every model this package builds (training and generation). Presets
carry the published shapes; ``num_params()`` is exact (it counts what :class:`Llama` allocates).
"""
from __future__ import annotations

import dataclasses
import math
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

    def __post_init__(self) -> None:
        # Every field divides something in rope.inverse_frequencies: zero, negative or
        # non-finite values give NaN or infinite frequencies (NaN logits much later).
        for f in ("factor", "low_freq_factor", "high_freq_factor"):
            _positive_finite(f"RopeScaling.{f}", getattr(self, f))
        if not self.high_freq_factor > self.low_freq_factor:
            raise ConfigError(f"RopeScaling.high_freq_factor ({self.high_freq_factor}) must be "
                              f"greater than low_freq_factor ({self.low_freq_factor})")
        _positive_int("RopeScaling.original_max_position", self.original_max_position)


def _positive_int(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be a positive integer, got {v!r}")


def _positive_finite(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")


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
            _positive_int(f"LlamaConfig.{f}", getattr(self, f))
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"LlamaConfig.n_heads ({self.n_heads}) must be a multiple of "
                              f"n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ConfigError(f"LlamaConfig.head_dim must be even for RoPE, got {self.head_dim}")
        _positive_finite("LlamaConfig.rope_theta", self.rope_theta)
        # RMSNorm divides by sqrt(mean(x^2) + eps): eps <= 0 or NaN gives inf/NaN activations.
        _positive_finite("LlamaConfig.norm_eps", self.norm_eps)
        if not isinstance(self.tied, bool):
            raise ConfigError(f"LlamaConfig.tied must be True or False, got {self.tied!r}")
        if self.rope_scaling is not None and not isinstance(self.rope_scaling, RopeScaling):
            raise ConfigError(f"LlamaConfig.rope_scaling must be None or a RopeScaling, "
                              f"got {type(self.rope_scaling).__name__}")
        for f in ("bos_token_id", "eos_token_id"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"LlamaConfig.{f} must be None or a token id >= 0, got {v!r}")
        if not isinstance(self.name, str):
            raise ConfigError(f"LlamaConfig.name must be a string, got {self.name!r}")

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

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor in :class:`fastsynth.model.Llama`'s state dict
        (``lm_head.weight`` only when untied): what a checkpoint must hold, checked by the
        loaders before any model memory is allocated."""
        q_out, kv_out = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        shapes: dict[str, tuple[int, ...]] = {"embed.weight": (self.vocab, self.hidden),
                                              "norm.weight": (self.hidden,)}
        if not self.tied:
            shapes["lm_head.weight"] = (self.vocab, self.hidden)
        for i in range(self.n_layers):
            p = f"layers.{i}."
            shapes.update({
                p + "attn_norm.weight": (self.hidden,),
                p + "attn.wqkv.weight": (q_out + 2 * kv_out, self.hidden),
                p + "attn.wo.weight": (self.hidden, q_out),
                p + "mlp_norm.weight": (self.hidden,),
                p + "mlp.w_gate_up.weight": (2 * self.ffn, self.hidden),
                p + "mlp.w_down.weight": (self.hidden, self.ffn),
            })
        return shapes

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
