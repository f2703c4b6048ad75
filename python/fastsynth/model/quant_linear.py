"""Projections that read GGUF block-quantised weights directly during small-batch decoding (CPU).

Why: a batch-1 decode step is memory-bound; the float32 weights of SmolLM2-135M are ~540 MB
per token, while the GGUF's Q4_1 blocks (20 bytes per 32 weights) and the Q8_0 tied LM head
(34 bytes per 32) are ~100 MB. :class:`QuantLinear` multiplies inputs of at most ``max_rows``
rows (decode steps of small batches) with the native kernel ``fastsynth._native.quant_matmul``
on the blocks, and hands everything else (prefill, large batches, autograd, other devices or
dtypes) to the dense module it wraps. The kernel uses each weight exactly as the GGUF
dequantiser does (float32 ``d*q`` (+ ``m``)), with float32 activations, so its products equal
the dense path up to float32 summation order.

Memory: the blocks are kept beside the dense weights (~+100 MB for SmolLM2-135M), except for
a tied LM head, whose prepacked float32 copy is replaced (see ``LM_HEAD_MAX_ROWS``).
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn as nn

# Largest row count sent to the quantised kernel: decode steps of batches up to 16. From 5 rows
# on, the kernel dequantises groups of 4 weight rows to float32 once and multiplies them from
# registers with 3 activation rows at a time; measured in SmolLM2 batch-16 generation, that is
# ~1.2x faster than oneDNN-prepacked float32 (which reads 5x more bytes per step). Larger inputs
# (prefill) go to the dense module: plain matmuls keep prompt logits equal to transformers'.
MAX_ROWS = 16
# The tied LM head (Q8_0 token_embd) goes to the kernel up to this many rows: measured on the
# 49152 x 576 head here, the kernel matches the oneDNN-prepacked product at 16-64 rows and beats
# torch's plain matmul 1.2-2x, so the prepacked float32 copy (113 MB) is dropped; the embedding
# table itself serves larger inputs. That keeps issue 5's 1.2 GB peak (blocks add ~100 MB).
LM_HEAD_MAX_ROWS = 64
_FORMATS = {"Q4_1": "q4_1", "Q8_0": "q8_0"}  # GGML type name -> kernel format


def _native():
    import fastsynth._native as native
    return native


class QuantLinear(nn.Module):
    """``y = x @ W.T``; ``W`` ``(out_features, in_features)`` held twice: as GGML blocks
    ``blocks`` (uint8 ``(out_features, bytes_per_row)``, format ``fmt`` = ``"q4_1"`` or
    ``"q8_0"``) and inside ``dense`` (any module computing the same product, e.g. ``nn.Linear``
    or :class:`~fastsynth.model.cpu_linear.PackedLinear`).

    Forward only for the quantised path: float32 CPU inputs ``(..., in_features)`` with at most
    ``max_rows`` rows that do not require grad use the blocks; all others go to ``dense``.
    ``simd=False`` forces the kernel's portable scalar path (for tests).
    """

    def __init__(self, blocks: np.ndarray, fmt: str, in_features: int, dense: nn.Module,
                 max_rows: int = MAX_ROWS, simd: bool = True):
        super().__init__()
        if fmt not in _FORMATS.values():
            from fastsynth.errors import ConfigError
            raise ConfigError(f"fmt must be one of {sorted(_FORMATS.values())}, got {fmt!r}")
        self.blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
        self.fmt, self.in_features = fmt, in_features
        self.out_features = self.blocks.shape[0]
        self.dense, self.max_rows, self.simd = dense, max_rows, simd
        self._matmul = _native().quant_matmul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if rows > self.max_rows or x.device.type != "cpu" or x.dtype != torch.float32 \
                or x.requires_grad:
            return self.dense(x)
        x2 = x.reshape(rows, self.in_features).contiguous()
        y = self._matmul(self.blocks, self.fmt, self.out_features, x2.numpy(),
                         threads=torch.get_num_threads(), simd=self.simd)
        return torch.from_numpy(y).view(*x.shape[:-1], self.out_features)


def _stacked_blocks(reader, names: list[str], permute_heads: list[int | None]) -> tuple[np.ndarray, str] | None:
    """Rows of the named GGUF tensors stacked in order (q/k rows un-permuted as whole block
    rows), or None when a tensor is not in a supported format or the formats differ."""
    from fastsynth.model.gguf_file import unpermute_qk
    parts, fmt = [], None
    for name, heads in zip(names, permute_heads):
        qtype = reader.tensors[name].qtype.name
        if qtype not in _FORMATS or (fmt is not None and _FORMATS[qtype] != fmt):
            return None
        fmt = _FORMATS[qtype]
        rows = reader.blocks(name)
        parts.append(unpermute_qk(rows, heads) if heads else rows)
    return np.concatenate(parts), fmt


def quantize_linears(model: nn.Module, path: str | os.PathLike, max_rows: int = MAX_ROWS,
                     simd: bool = True) -> int:
    """Wrap the projections of ``model`` (a float32 CPU :class:`~fastsynth.model.Llama` loaded
    from the GGUF file ``path``) in :class:`QuantLinear`, in place, using the file's Q4_1/Q8_0
    blocks; tensors in other formats keep their dense module. Call after
    :func:`~fastsynth.model.cpu_linear.pack_linears` (the packed modules become the dense
    fallback). Returns the number of projections wrapped."""
    from fastsynth.model.gguf_file import open_gguf
    reader = open_gguf(path)
    cfg = model.config
    wrapped = 0

    def wrap(owner: nn.Module, attr: str, names: list[str], heads: list[int | None],
             rows: int = max_rows) -> None:
        nonlocal wrapped
        dense = getattr(owner, attr)
        if isinstance(dense, QuantLinear) or any(n not in reader.tensors for n in names):
            return
        got = _stacked_blocks(reader, names, heads)
        if got is None:
            return
        blocks, fmt = got
        in_features = reader.tensors[names[0]].shape[-1]
        out_features = dense.out_features if hasattr(dense, "out_features") else None
        if out_features != blocks.shape[0]:
            return
        if owner is model and attr == "lm_head" and cfg.tied:
            # a plain product over the (shared) embedding table instead of a packed copy
            dense = nn.Linear(in_features, out_features, bias=False, device="meta")
            dense.weight = model.embed.weight
        setattr(owner, attr, QuantLinear(blocks, fmt, in_features, dense, rows, simd))
        wrapped += 1

    # the head first: a tied head releases its packed copy before the layers' blocks are read
    wrap(model, "lm_head", ["token_embd.weight" if cfg.tied else "output.weight"], [None],
         max(max_rows, LM_HEAD_MAX_ROWS) if cfg.tied else max_rows)
    for i, block in enumerate(model.layers):
        p = f"blk.{i}."
        wrap(block.attn, "wqkv", [p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"],
             [cfg.n_heads, cfg.n_kv_heads, None])
        wrap(block.attn, "wo", [p + "attn_output.weight"], [None])
        wrap(block.mlp, "w_gate_up", [p + "ffn_gate.weight", p + "ffn_up.weight"], [None, None])
        wrap(block.mlp, "w_down", [p + "ffn_down.weight"], [None])
    model.quantized = wrapped > 0
    return wrapped
