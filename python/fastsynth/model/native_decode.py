"""Decode steps in native code: every layer of a batch-``B`` decode step in one C++ call.

Why: on a CPU a batch-1 decode step of a model this small is dominated by per-op cost, not by
arithmetic: the torch forward issues ~40 ops per layer (norms, RoPE, cache writes, SDPA, SwiGLU,
residuals), each with dispatch, allocation and an OpenMP wake-up; measured in
docs/serving.md "Decode speed". :class:`NativeDecode` runs the same arithmetic
(``fastsynth._native.NativeDecoder``, csrc/decode.cpp) over the GGUF blocks that
:func:`~fastsynth.model.quant_linear.quantize_linears` attached and the model's own KV cache.

Modes:

- ``"float32"`` (default): float32 activations, each weight exactly the GGUF dequantiser's value;
  equals the torch path up to float32 rounding, so decode logits stay within the 1e-4 contract
  (tests/test_decode_native.py).
- ``"int8"`` (opt-in; ~10% faster at batch 1, ~12% slower at batch 16): every projection's input is quantised to 8 bits per 32-block
  and multiplied with integer dot products (llama.cpp's Q8_1 scheme). Logits move by a measured,
  documented amount (``INT8_MAX_LOGIT_ERROR``; greedy tokens mostly agree); not exact.

A step is taken by :meth:`fastsynth.model.Llama.forward` itself when ``model.native_decode`` is
set and the call is a decode step it covers (``input_ids`` ``(B, 1)``, a KV cache, logits wanted,
CPU float32, no autograd, ``B <= max_rows``); everything else runs the torch path unchanged.
"""
from __future__ import annotations

import numpy as np
import torch

from fastsynth.errors import ConfigError

MODES = ("float32", "int8")
# Rows per step taken natively: the serving batch size (larger batches keep the torch path,
# whose batched products amortise their per-op cost).
MAX_ROWS = 16
# Bound on |logit - float32 mode's logit| for mode "int8" on the embedded SmolLM2-135M (logits
# of magnitude ~30): measured max 1.07 over 8 chat prompts x 32 greedy tokens (teacher-forced
# argmax agreement 197/204, 4/8 free-running greedy texts identical); 1.5 leaves room for other
# prompts. Checked by tests/test_decode_native.py.
INT8_MAX_LOGIT_ERROR = 1.5


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class NativeDecode:
    """The native decode step of ``model`` (a CPU float32 :class:`~fastsynth.model.Llama` whose
    projections and LM head are :class:`~fastsynth.model.quant_linear.QuantLinear`). ``mode``:
    ``"float32"`` or ``"int8"`` (module docstring). Raises ``ConfigError`` when the model has a
    projection without GGUF blocks."""

    def __init__(self, model: torch.nn.Module, mode: str = "float32", max_rows: int = MAX_ROWS):
        from fastsynth.model.quant_linear import QuantLinear
        import fastsynth._native as native
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if not isinstance(max_rows, int) or max_rows < 1:
            raise ConfigError(f"max_rows must be a positive integer, got {max_rows!r}")
        cfg = model.config
        mats = [model.lm_head] + [m for b in model.layers for m in
                                  (b.attn.wqkv, b.attn.wo, b.mlp.w_gate_up, b.mlp.w_down)]
        if not all(isinstance(m, QuantLinear) for m in mats):
            raise ConfigError("native decoding needs GGUF blocks for every projection and the LM "
                              "head (quantize_linears found a tensor in another format)")
        if model.embed.weight.dtype != torch.float32 or model.embed.weight.device.type != "cpu":
            raise ConfigError("native decoding needs a float32 model on the CPU")
        layers = [(_np(b.attn_norm.weight), b.attn.wqkv.blocks, b.attn.wqkv.fmt,
                   b.attn.wo.blocks, b.attn.wo.fmt, _np(b.mlp_norm.weight),
                   b.mlp.w_gate_up.blocks, b.mlp.w_gate_up.fmt, b.mlp.w_down.blocks,
                   b.mlp.w_down.fmt) for b in model.layers]
        self.decoder = native.NativeDecoder(
            cfg.hidden, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn, float(cfg.norm_eps),
            _np(model.inv_freq.float()), _np(model.embed.weight), _np(model.norm.weight),
            model.lm_head.blocks, model.lm_head.fmt, layers)
        self.mode, self.max_rows = mode, max_rows

    def accepts(self, input_ids: torch.Tensor) -> bool:
        """True when a forward with these ``input_ids`` (and a cache) is a step this covers."""
        return (input_ids.ndim == 2 and input_ids.shape[1] == 1
                and 1 <= input_ids.shape[0] <= self.max_rows
                and input_ids.device.type == "cpu" and not torch.is_grad_enabled())

    def step(self, input_ids: torch.Tensor, positions: torch.Tensor | None, cache,
             key_mask: torch.Tensor | None) -> torch.Tensor:
        """Logits ``(B, 1, vocab)`` float32 for ``input_ids`` ``(B, 1)`` int64 at ``positions``
        ``(B, 1)`` (default: ``cache.length``); writes the keys/values at slot ``cache.length``
        and advances it. ``key_mask``: ``(B, cache.length + 1)`` bool, True = attend."""
        b = input_ids.shape[0]
        if positions is None:
            positions = torch.full((b, 1), cache.length, dtype=torch.long)
        mask = None
        if key_mask is not None:
            if key_mask.dtype != torch.bool:
                raise ConfigError("native decoding takes a bool key_mask")
            mask = None if bool(key_mask.all()) else _np(key_mask)
        logits = self.decoder.step(
            _np(input_ids.reshape(b).to(torch.long)), _np(positions.reshape(b).to(torch.long)),
            [k.numpy() for k in cache.k], [v.numpy() for v in cache.v], cache.length, mask,
            threads=torch.get_num_threads(), mode=self.mode)
        cache.length += 1
        return torch.from_numpy(logits).view(b, 1, -1)


def attach_native_decode(model: torch.nn.Module, mode: str = "float32",
                         max_rows: int = MAX_ROWS) -> NativeDecode:
    """Build :class:`NativeDecode` for ``model`` and make its forward use it for decode steps
    (``model.native_decode``). Returns it."""
    nd = NativeDecode(model, mode, max_rows)
    model.native_decode = nd
    return nd
