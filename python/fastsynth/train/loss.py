"""Chunked linear + cross-entropy: the LM head and the loss without all logits at once.

A batch of ``T`` tokens over a ``V``-word vocabulary has ``T*V`` logits: 4096 tokens x 128,256
words is 2.1 GB in float32, more than the rest of a 1B model's activations. Here the head
matmul, the log-sum-exp and the gradient are computed ``chunk_rows`` tokens at a time, so
only ``chunk_rows * V`` logits exist at any moment (docs/training.md, "Loss").

The gradient is taken in the forward pass (as Liger-Kernel's fused linear cross-entropy
does): for each chunk, ``dL/dlogits = softmax - onehot`` is formed once and multiplied into
``dL/dhidden`` and ``dL/dweight`` right away, so backward is a scale by the incoming
gradient and no logits are recomputed. Cost: one float32 ``V x H`` gradient buffer and a
``T x H`` one, held from forward to backward.

Convention: the result is the **sum** of per-token losses (nats) over targets that are not
``ignore_index``; divide by the number of targets for the mean (the loop divides by the
whole optimizer step's target count, so gradient accumulation weights every token alike).
"""
from __future__ import annotations

import torch

IGNORE_INDEX = -100
DEFAULT_CHUNK_ROWS = 4096


def _chunk_terms(h: torch.Tensor, weight: torch.Tensor, y: torch.Tensor, ignore_index: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(float32 logits, log-sum-exp, clamped targets, valid mask) of one chunk."""
    logits = (h @ weight.t()).float()
    lse = torch.logsumexp(logits, dim=-1)
    valid = y != ignore_index
    yc = torch.where(valid, y, torch.zeros_like(y))
    return logits, lse, yc, valid


class _ChunkedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                chunk_rows: int, ignore_index: int) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) \
            if ctx.needs_input_grad[1] else None
        for s in range(0, hidden.shape[0], chunk_rows):
            h, y = hidden[s:s + chunk_rows], labels[s:s + chunk_rows]
            logits, lse, yc, valid = _chunk_terms(h, weight, y, ignore_index)
            target = logits.gather(1, yc[:, None])[:, 0]
            total += ((lse - target) * valid).sum()
            # dL/dlogits = softmax - onehot on valid rows, 0 on ignored ones; in place
            g = logits.sub_(lse[:, None]).exp_()
            g[torch.arange(g.shape[0], device=g.device), yc] -= 1.0
            g.mul_(valid[:, None])
            g = g.to(hidden.dtype)
            if grad_h is not None:
                grad_h[s:s + chunk_rows] = g @ weight
            if grad_w is not None:
                grad_w += (g.t() @ h).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        gh = None if grad_h is None else grad_h * grad_out.to(grad_h.dtype)
        gw = None if grad_w is None else (grad_w * grad_out).to(ctx.weight_dtype)
        return gh, gw, None, None, None


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                          *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                          ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Summed cross-entropy (nats, float32 scalar) of ``hidden @ weight.T`` against ``labels``.

    ``hidden``: ``(T, H)`` final hidden states (after the last norm); ``weight``: ``(V, H)`` LM
    head (tied: the embedding matrix); ``labels``: int64 ``(T,)``, ``ignore_index`` where there
    is no target. Both matrices must share a dtype; matmuls run in it, the softmax in float32.
    Equal, up to float rounding, to
    ``F.cross_entropy(hidden @ weight.T, labels, ignore_index=..., reduction="sum")``, with
    gradients for ``hidden`` and ``weight``; at most ``chunk_rows * V`` logits are alive.
    """
    if hidden.ndim != 2 or weight.ndim != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden (T, H) and weight (V, H) expected, got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"labels must be ({hidden.shape[0]},), got {tuple(labels.shape)}")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) dtypes differ")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _ChunkedLinearCE.apply(hidden, weight, labels, chunk_rows, ignore_index)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for s in range(0, hidden.shape[0], chunk_rows):
        logits, lse, yc, valid = _chunk_terms(hidden[s:s + chunk_rows], weight,
                                              labels[s:s + chunk_rows], ignore_index)
        total += ((lse - logits.gather(1, yc[:, None])[:, 0]) * valid).sum()
    return total
