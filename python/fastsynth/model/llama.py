"""The Llama-family decoder: RMSNorm, RoPE (Llama 3 scaling), grouped-query attention, SwiGLU.

One module serves training (padded or packed varlen batches) and generation (a preallocated
:class:`KVCache`). Projections are stored fused — ``wqkv`` = [q; k; v] rows and ``w_gate_up``
= [gate; up] rows — so a decode step issues two matmuls fewer per layer; the weight loaders
split and join them when reading or writing HF/GGUF checkpoints.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastsynth.model.attention import attention
from fastsynth.model.config import LlamaConfig
from fastsynth.model.rope import apply_rope, inverse_frequencies, rope_cos_sin


class RMSNorm(nn.Module):
    """``weight * x / sqrt(mean(x^2) + eps)``, statistics in float32."""

    def __init__(self, dim: int, eps: float, device: torch.device | str | None = None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused op; bit-identical to the float32 formula
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class KVCache:
    """Preallocated keys and values: per layer ``(B, capacity, Hkv, head_dim)`` tensors.

    ``length`` slots are filled (the same for every row; generation left-pads prompts and masks
    padding slots with a key mask). ``select(rows)`` keeps a subset of rows (finished sequences
    leave the batch).
    """

    def __init__(self, config: LlamaConfig, batch: int, capacity: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (batch, capacity, config.n_kv_heads, config.head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.capacity = capacity
        self.length = 0

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    def select(self, rows: torch.Tensor) -> None:
        self.k = [t.index_select(0, rows) for t in self.k]
        self.v = [t.index_select(0, rows) for t in self.v]


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, device: torch.device | str | None = None):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = config.n_heads, config.n_kv_heads, config.head_dim
        q_out, kv_out = self.n_heads * self.hd, self.n_kv * self.hd
        self.splits = (q_out, kv_out, kv_out)
        self.wqkv = nn.Linear(config.hidden, q_out + 2 * kv_out, bias=False, device=device)
        self.wo = nn.Linear(q_out, config.hidden, bias=False, device=device)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *,
                cu_seqlens: torch.Tensor | None, max_seqlen: int | None,
                cache: KVCache | None, layer: int,
                key_mask: torch.Tensor | None) -> torch.Tensor:
        lead = x.shape[:-1]  # (B, T) padded or (total,) packed
        qkv = self.wqkv(x)
        # q and k heads are adjacent in the fused output: rotate them in one go. Under autocast
        # the tables are float32 (the residual stream's dtype), so the rotation is computed in
        # float32 and rounded back to the projection's dtype: q, k and v then share one dtype,
        # as the fused attention kernels need (SDPA's autocast rounded q and k the same way).
        qk = apply_rope(qkv[..., :self.splits[0] + self.splits[1]].view(
            *lead, self.n_heads + self.n_kv, self.hd), cos, sin).to(qkv.dtype)
        q, k = qk[..., :self.n_heads, :], qk[..., self.n_heads:, :]
        v = qkv[..., self.splits[0] + self.splits[1]:].view(*lead, self.n_kv, self.hd)
        if cu_seqlens is not None:
            out = attention(q, k, v, cu_seqlens_q=cu_seqlens, max_seqlen_q=max_seqlen)
        else:
            if cache is not None:
                start, end = cache.length, cache.length + x.shape[1]
                cache.k[layer][:, start:end] = k
                cache.v[layer][:, start:end] = v
                k, v = cache.k[layer][:, :end], cache.v[layer][:, :end]
            out = attention(q, k, v, key_mask=key_mask)
        return self.wo(out.reshape(*lead, self.n_heads * self.hd))


class MLP(nn.Module):
    """SwiGLU: ``w_down(silu(gate(x)) * up(x))``."""

    def __init__(self, config: LlamaConfig, device: torch.device | str | None = None):
        super().__init__()
        self.ffn = config.ffn
        self.w_gate_up = nn.Linear(config.hidden, 2 * config.ffn, bias=False, device=device)
        self.w_down = nn.Linear(config.ffn, config.hidden, bias=False, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w_gate_up(x).split(self.ffn, dim=-1)
        return self.w_down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: LlamaConfig, device: torch.device | str | None = None):
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden, config.norm_eps, device)
        self.attn = Attention(config, device)
        self.mlp_norm = RMSNorm(config.hidden, config.norm_eps, device)
        self.mlp = MLP(config, device)


class Llama(nn.Module):
    """Llama decoder. ``forward`` returns logits (float of the model's dtype).

    ``device="meta"`` builds the structure without memory (weights assigned later). Pass the
    device here rather than using ``with torch.device("meta")``: the context manager routes
    initialisation through torch._dynamo, which imports triton (~1 s, ~100 MB of memory).
    """

    def __init__(self, config: LlamaConfig, device: torch.device | str | None = None):
        super().__init__()
        self.config = config
        # _weight skips nn.Embedding's normal_ init, which on "meta" also imports torch._dynamo
        self.embed = nn.Embedding(config.vocab, config.hidden, _weight=torch.empty(
            config.vocab, config.hidden, device=device).normal_() if device != "meta" else
            torch.empty(config.vocab, config.hidden, device=device))
        self.layers = nn.ModuleList(Block(config, device) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.hidden, config.norm_eps, device)
        self.lm_head = nn.Linear(config.hidden, config.vocab, bias=False, device=device)
        if config.tied:
            self.lm_head.weight = self.embed.weight
        self.register_buffer("inv_freq", inverse_frequencies(config).to(device),
                             persistent=False)

    def reset_parameters(self, std: float = 0.02, seed: int | None = None) -> "Llama":
        """Normal(0, std) for matrices, ones for norms (random init for tests and training)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.ndim == 1:
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)
            self.inv_freq.copy_(inverse_frequencies(self.config))
        return self

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None, *,
                cu_seqlens: torch.Tensor | None = None, max_seqlen: int | None = None,
                cache: KVCache | None = None, key_mask: torch.Tensor | None = None,
                last_only: bool = False, head: bool = True) -> torch.Tensor:
        """Logits for ``input_ids`` (or, with ``head=False``, the hidden states before the head).

        - padded: ``input_ids`` ``(B, T)`` int64; ``positions`` ``(B, T)`` (default ``0..T-1``);
          ``key_mask`` ``(B, cache.length + T)`` bool, False for padding (optional).
        - packed: ``input_ids`` ``(total,)`` with ``cu_seqlens`` int32 ``(B+1,)``, ``max_seqlen``
          and ``positions`` ``(total,)`` restarting at 0 per document (required).
        - ``cache``: a :class:`KVCache`; the new keys/values are written at
          ``[cache.length, cache.length + T)`` and ``cache.length`` advances by T.
        - ``last_only``: logits of the last position only, ``(B, 1, vocab)`` (saves the vocab
          projection over the prompt during prefill).
        - ``head``: False returns the final-norm hidden states, ``input_ids.shape + (hidden,)``
          (or ``(B, 1, hidden)`` with ``last_only``), in the activations' dtype; ``lm_head`` is
          not called (a chunked loss applies ``lm_head.weight`` itself, docs/training.md "Loss").
        Returns ``input_ids.shape + (vocab,)`` (or the last-only shape).

        With ``self.native_decode`` set (:func:`fastsynth.model.native_decode.
        attach_native_decode`), a decode step it covers runs in native code instead.
        """
        native = self.__dict__.get("native_decode")  # set by model.native_decode
        if native is not None and cache is not None and cu_seqlens is None and head \
                and native.accepts(input_ids):
            return native.step(input_ids, positions, cache, key_mask)
        if cu_seqlens is not None:
            if input_ids.ndim != 1 or positions is None:
                raise ValueError("packed input needs 1-D input_ids and positions")
            if max_seqlen is None:
                max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        elif positions is None:
            start = cache.length if cache is not None else 0
            positions = torch.arange(start, start + input_ids.shape[-1],
                                     device=input_ids.device).expand(input_ids.shape)
        x = self.embed(input_ids)
        cos, sin = rope_cos_sin(positions, self.inv_freq, x.dtype)
        if key_mask is not None:
            # no padding: drop the mask (lets attention take its unmasked path); else turn it
            # into an additive bias once instead of once per layer
            key_mask = None if bool(key_mask.all()) else torch.zeros(
                key_mask.shape, dtype=x.dtype, device=x.device).masked_fill_(
                    ~key_mask, float("-inf"))[:, None, None, :]
        for i, block in enumerate(self.layers):
            x = x + block.attn(block.attn_norm(x), cos, sin, cu_seqlens=cu_seqlens,
                               max_seqlen=max_seqlen, cache=cache, layer=i, key_mask=key_mask)
            x = x + block.mlp(block.mlp_norm(x))
        if cache is not None:
            cache.length += input_ids.shape[-1]
        if last_only:
            x = x[..., -1:, :]
        x = self.norm(x)
        return self.lm_head(x) if head else x
