"""A varlen attention backend for the CPU that costs O(segments x max_seqlen^2), not O(total^2).

``fastsynth.model.attention``'s ``sdpa`` varlen path runs one SDPA call over the whole
flattened batch with a ``(total, total)`` block-diagonal mask: a batch of 16 rows x 256
tokens computes 4096^2 scores per head where 16 x 256^2 are needed, which made packed
training 3-4x slower than padded training here (docs/training.md, "Attention on the CPU").
This backend scatters each segment into its own row of a ``(n_segments, max_seqlen)``
layout, runs causal SDPA without a mask (right padding is never seen by a real query under
the causal mask), and gathers the outputs back. Exact: the same softmax over the same keys.

Registered as ``"sdpa-segments"``; the training loop selects it on the CPU. It belongs next
to the other backends in ``fastsynth.model.attention``; it lives here until it moves there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastsynth.model import attention as _attention

NAME = "sdpa-segments"


def segment_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                   max_seqlen_q: int | None, max_seqlen_k: int | None,
                   causal: bool = True) -> torch.Tensor:
    """flash-attn's varlen call (q ``(total, Hq, D)``, k/v ``(total, Hkv, D)``, ``cu_seqlens``
    int32 ``(n+1,)``) for self-attention (``cu_seqlens_q`` equal to ``cu_seqlens_k``).

    Other calls (cross lengths) go to the ``sdpa`` backend's masked path.
    """
    same = cu_seqlens_q is cu_seqlens_k or (
        cu_seqlens_q.shape == cu_seqlens_k.shape and bool(torch.equal(cu_seqlens_q, cu_seqlens_k)))
    if not same or q.shape[0] != k.shape[0]:
        return _attention._sdpa_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                       max_seqlen_k, causal=causal)
    lens = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).long()
    n = lens.numel()
    width = int(max_seqlen_q) if max_seqlen_q is not None else int(lens.max())
    seg = torch.repeat_interleave(torch.arange(n, device=q.device), lens)
    local = torch.arange(q.shape[0], device=q.device) - cu_seqlens_q.long()[seg]
    slot = seg * width + local                       # token -> row-major slot in (n, width)

    def spread(x: torch.Tensor) -> torch.Tensor:     # (total, H, D) -> (n, H, width, D)
        out = x.new_zeros((n * width, *x.shape[1:])).index_copy(0, slot, x)
        return out.view(n, width, *x.shape[1:]).transpose(1, 2)

    qs, ks, vs = spread(q), spread(k), spread(v)
    out = F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal,
                                         enable_gqa=qs.shape[1] != ks.shape[1])
    if not causal:  # without the causal mask a real query would see the padding keys
        raise ValueError("sdpa-segments supports causal attention only")
    return out.transpose(1, 2).reshape(n * width, *q.shape[1:]).index_select(0, slot)


_attention.register_backend(NAME, varlen=segment_varlen)
