"""One attention entry point for the model, with pluggable backends.

The model calls :func:`attention` only. Two input layouts:

- **padded**: q ``(B, Tq, Hq, D)``, k/v ``(B, Tk, Hkv, D)``; optional ``key_mask`` ``(B, Tk)``
  bool (True = attend; False for padding slots). Causal masking is aligned bottom-right: query
  ``i`` sees keys ``j <= i + (Tk - Tq)`` — so a decode step (Tq=1) over a KV cache sees the
  whole cache.
- **varlen (packed)**: q ``(total_q, Hq, D)``, k/v ``(total_k, Hkv, D)``, ``cu_seqlens_q``/
  ``cu_seqlens_k`` int32 ``(B+1,)`` offsets, ``max_seqlen_q``/``max_seqlen_k`` ints — the call
  shape of flash-attn's ``flash_attn_varlen_func`` and ``fastsynth.kernels.attention.
  flash_attn_varlen``. Documents never attend to each other; causal is bottom-right per document.

Grouped-query attention: ``Hq % Hkv == 0``; query heads ``[g*i, g*(i+1))`` use KV head ``i``.
Scale is ``1/sqrt(D)``. Output has q's shape.

Backends register with :func:`register_backend`; a backend supplies a varlen function, a padded
function, or both, and :func:`attention` falls back to ``"sdpa"`` for a layout the chosen backend
lacks. The Triton kernel (``fastsynth.kernels.attention``) and flash-attn register the same
way, so the model never changes.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from fastsynth.errors import ConfigError

VarlenFn = Callable[..., torch.Tensor]
PaddedFn = Callable[..., torch.Tensor]


@dataclass
class Backend:
    name: str
    varlen: VarlenFn | None = None
    padded: PaddedFn | None = None
    available: Callable[[], bool] = lambda: True


_BACKENDS: dict[str, Backend] = {}
_active = os.environ.get("FASTSYNTH_ATTENTION", "sdpa")


def register_backend(name: str, *, varlen: VarlenFn | None = None,
                     padded: PaddedFn | None = None,
                     available: Callable[[], bool] = lambda: True) -> None:
    """Register (or replace) an attention backend under ``name``.

    ``varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=True)``;
    ``padded(q, k, v, key_mask=None, causal=True)`` with the shapes in the module docstring.
    """
    if varlen is None and padded is None:
        raise ConfigError(f"attention backend {name!r} must provide varlen or padded")
    _BACKENDS[name] = Backend(name, varlen, padded, available)


def backends() -> list[str]:
    """Names of registered backends that are usable on this machine."""
    return [n for n, b in _BACKENDS.items() if b.available()]


def set_backend(name: str) -> None:
    """Make ``name`` the default backend for :func:`attention`."""
    global _active
    _get(name)
    _active = name


def get_backend() -> str:
    return _active


def _get(name: str) -> Backend:
    b = _BACKENDS.get(name)
    if b is None:
        raise ConfigError(f"unknown attention backend {name!r}; registered: {sorted(_BACKENDS)}")
    if not b.available():
        raise ConfigError(f"attention backend {name!r} is not available on this machine")
    return b


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
              cu_seqlens_q: torch.Tensor | None = None,
              cu_seqlens_k: torch.Tensor | None = None,
              max_seqlen_q: int | None = None, max_seqlen_k: int | None = None,
              key_mask: torch.Tensor | None = None, causal: bool = True,
              backend: str | None = None) -> torch.Tensor:
    """Scaled dot-product attention in the padded or varlen layout (see module docstring)."""
    b = _get(backend or _active)
    if cu_seqlens_q is not None:
        if cu_seqlens_k is None:
            cu_seqlens_k, max_seqlen_k = cu_seqlens_q, max_seqlen_q
        fn = b.varlen or _BACKENDS["sdpa"].varlen
        return fn(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=causal)
    fn = b.padded or _BACKENDS["sdpa"].padded
    return fn(q, k, v, key_mask=key_mask, causal=causal)


# ---------------------------------------------------------------------------- SDPA backend

def _sdpa_padded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                 key_mask: torch.Tensor | None = None, causal: bool = True) -> torch.Tensor:
    tq, tk = q.shape[1], k.shape[1]
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
    gqa = qh.shape[1] != kh.shape[1]
    mask = None
    if causal and tq > 1:
        mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(tk - tq)
    if key_mask is not None:
        km = key_mask[:, None, None, :]
        mask = km if mask is None else (mask & km)
    if mask is None and causal and tq == tk:
        out = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, enable_gqa=gqa)
    else:
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, enable_gqa=gqa)
    return out.transpose(1, 2)


def _sdpa_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                 max_seqlen_q: int | None, max_seqlen_k: int | None,
                 causal: bool = True) -> torch.Tensor:
    # One SDPA call over the packed tokens with a block-diagonal (per-document) mask: query i of
    # document d sees key j of the same document when j_local <= i_local + (len_k - len_q).
    dev = q.device
    lens_q = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).long()
    lens_k = (cu_seqlens_k[1:] - cu_seqlens_k[:-1]).long()
    n = lens_q.numel()
    doc_q = torch.repeat_interleave(torch.arange(n, device=dev), lens_q)
    doc_k = torch.repeat_interleave(torch.arange(n, device=dev), lens_k)
    pos_q = torch.arange(q.shape[0], device=dev) - cu_seqlens_q.long()[doc_q]
    pos_k = torch.arange(k.shape[0], device=dev) - cu_seqlens_k.long()[doc_k]
    mask = doc_q[:, None] == doc_k[None, :]
    if causal:
        shift = (lens_k - lens_q)[doc_q]
        mask &= pos_k[None, :] <= (pos_q + shift)[:, None]
    qh, kh, vh = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # (H, T, D)
    out = F.scaled_dot_product_attention(qh[None], kh[None], vh[None], attn_mask=mask,
                                         enable_gqa=qh.shape[0] != kh.shape[0])
    # A query row with no visible key (len_k < len_q under causal) gives NaN; define it as 0.
    return torch.nan_to_num(out[0].transpose(0, 1), nan=0.0)


register_backend("sdpa", varlen=_sdpa_varlen, padded=_sdpa_padded)


def _flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def _flash_attn_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal=True):  # pragma: no cover
    from flash_attn import flash_attn_varlen_func
    return flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal=causal)


def _triton_available() -> bool:
    try:
        mod = importlib.import_module("fastsynth.kernels.attention")
    except Exception:  # the kernel module may not exist yet or triton may be missing
        return False
    return hasattr(mod, "flash_attn_varlen")


def _triton_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal=True):
    from fastsynth.kernels.attention import flash_attn_varlen
    return flash_attn_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal=causal)


register_backend("flash-attn", varlen=_flash_attn_varlen, available=_flash_attn_available)
register_backend("triton", varlen=_triton_varlen, available=_triton_available)
