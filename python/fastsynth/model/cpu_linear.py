"""Inference-only linear layers with weights prepacked for oneDNN (CPU, float32).

Why: on the AMD EPYC (AVX2) machines we run on, torch's default float32 matmul (MKL) reaches
about half the throughput of oneDNN with a prepacked weight layout: measured 2-3x on the
(16, 576) x (576, 3072) and (16, 576) x (576, 49152) products of a SmolLM2 batch-16 decode step.
The packed products sum in a different order, so logits differ from the plain path by float32
rounding (~2e-4 absolute on logits of magnitude ~40); greedy tokens were identical on our
prompts. Use :func:`pack_linears` on a model that will only run forward passes; the plain
module (``load()``) stays the reference. The local backend leaves it off by default: for GGUF
models the quantised decode kernel (:mod:`fastsynth.model.quant_linear`) is as fast or faster
at batches up to 16 and keeps prompt logits exact; packing pays for checkpoints without blocks.
"""
from __future__ import annotations

import torch
import torch.nn as nn

# Rows per matmul the packed layout is tuned for (a batch-16 decode step); any row count works.
BATCH_HINT = 16


def onednn_packing_available() -> bool:
    """True when this torch build has oneDNN and the prepacked-linear ops."""
    try:
        return bool(torch.backends.mkldnn.is_available()) and \
            hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and \
            hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


class PackedLinear(nn.Module):
    """``y = x @ weight.T`` with ``weight`` (out, in) float32 held in oneDNN's packed layout.

    Forward only (no autograd, no state_dict weight); ``x`` is ``(..., in)`` float32 on CPU.
    """

    def __init__(self, weight: torch.Tensor, batch_hint: int = BATCH_HINT):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        with torch.no_grad():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_hint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), self.packed,
                                               None, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)


def pack_linears(model: nn.Module, batch_hint: int = BATCH_HINT) -> nn.Module:
    """Replace the projections of a float32 CPU :class:`~fastsynth.model.Llama` by
    :class:`PackedLinear` (in place; the unpacked weights are released, except a tied
    embedding, which the input lookup still needs). Returns ``model``."""
    if not onednn_packing_available():
        return model
    for block in model.layers:
        for owner, name in ((block.attn, "wqkv"), (block.attn, "wo"),
                            (block.mlp, "w_gate_up"), (block.mlp, "w_down")):
            setattr(owner, name, PackedLinear(getattr(owner, name).weight, batch_hint))
    model.lm_head = PackedLinear(model.lm_head.weight, batch_hint)
    model.packed = True
    return model
