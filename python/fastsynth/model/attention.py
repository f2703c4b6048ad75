"""One attention entry point for the model, with pluggable backends.

The model calls :func:`attention` only. Two input layouts:

- **padded**: q ``(B, Tq, Hq, D)``, k/v ``(B, Tk, Hkv, D)``; optional ``key_mask`` ``(B, Tk)``
  bool (True = attend; False for padding slots), or an additive float bias ``(B, 1, 1, Tk)``
  (0 = attend, -inf = padding). Causal masking is aligned bottom-right: query
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
lacks. The Triton kernel (``fastsynth.kernels.attention``, backend ``"triton"``, varlen only) and
flash-attn (``"flash-attn"``) register the same way, so the model never changes.

Choosing a backend, first match wins: ``backend=`` of the call; :func:`set_backend`; the
``FASTSYNTH_ATTENTION`` environment variable (read at each call); else ``"auto"``. ``"auto"``
decides per call: on CUDA with fp16/bf16 inputs, ``"triton"`` for the varlen layout when the
kernel supports the head dim, else ``"flash-attn"`` when installed; ``"sdpa"`` otherwise (the
CPU, fp32, the padded layout).

``"sdpa"``'s varlen path puts self-attention (``cu_seqlens_q`` equal to ``cu_seqlens_k``) in a
per-segment padded layout, ``(n_segments, max_seqlen)``: O(segments x max_seqlen^2) scores; other
varlen calls (different q/k lengths) use one block-diagonal ``(total_q, total_k)`` mask.

Rows that see no key (causal with ``len_k < len_q``, or an empty key sequence) output 0 in
every backend (flash-attn 2 too; its log-sum-exp there is +inf, the Triton kernel's -inf).
"""
from __future__ import annotations

import importlib
import importlib.util
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
_ENV = "FASTSYNTH_ATTENTION"
_AUTO = "auto"
_active: str | None = None        # set_backend's choice; None defers to $FASTSYNTH_ATTENTION


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
    """Names of registered backends that are usable on this machine (``"auto"`` not included)."""
    return [n for n, b in _BACKENDS.items() if b.available()]


def set_backend(name: str | None) -> None:
    """Make ``name`` (a backend or ``"auto"``) the default for :func:`attention`; None goes back
    to ``$FASTSYNTH_ATTENTION`` / ``"auto"``."""
    global _active
    if name is not None and name != _AUTO:
        _get(name)
    _active = name


def get_backend() -> str:
    """The default backend name (may be ``"auto"``, resolved per call)."""
    return _active or os.environ.get(_ENV) or _AUTO


def _get(name: str, source: str = "backend") -> Backend:
    b = _BACKENDS.get(name)
    if b is None:
        raise ConfigError(f"unknown attention backend {name!r} ({source}); "
                          f"registered: {sorted(_BACKENDS)} or {_AUTO!r}")
    if not b.available():
        raise ConfigError(f"attention backend {name!r} ({source}) is not available on this machine")
    return b


def _auto(q: torch.Tensor, varlen: bool) -> Backend:
    """The automatic choice for these inputs (see the module docstring)."""
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        if varlen and q.shape[-1] in _TRITON_HEAD_DIMS and _BACKENDS["triton"].available():
            return _BACKENDS["triton"]
        if _BACKENDS["flash-attn"].available():
            return _BACKENDS["flash-attn"]
    return _BACKENDS["sdpa"]


def resolve_backend(q: torch.Tensor, *, varlen: bool = True, backend: str | None = None) -> str:
    """The backend :func:`attention` would use for ``q`` with these arguments."""
    return _resolve(q, varlen, backend).name


def _resolve(q: torch.Tensor, varlen: bool, backend: str | None) -> Backend:
    if backend is not None:
        name, source = backend, "backend argument"
    elif _active is not None:
        name, source = _active, "set_backend"
    else:
        name, source = os.environ.get(_ENV) or _AUTO, f"${_ENV}"
    return _auto(q, varlen) if name == _AUTO else _get(name, source)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
              cu_seqlens_q: torch.Tensor | None = None,
              cu_seqlens_k: torch.Tensor | None = None,
              max_seqlen_q: int | None = None, max_seqlen_k: int | None = None,
              key_mask: torch.Tensor | None = None, causal: bool = True,
              backend: str | None = None) -> torch.Tensor:
    """Scaled dot-product attention in the padded or varlen layout (see module docstring).

    ``backend``: a registered name or ``"auto"``; None uses the default (module docstring)."""
    b = _resolve(q, cu_seqlens_q is not None, backend)
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
    if key_mask is not None and key_mask.dtype == torch.bool:
        key_mask = key_mask[:, None, None, :]
    if causal and tq > 1:
        mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(tk - tq)
        if key_mask is not None and key_mask.dtype != torch.bool:   # additive bias
            mask = torch.zeros(tq, tk, dtype=q.dtype, device=q.device).masked_fill_(
                ~mask, float("-inf")) + key_mask
            key_mask = None
    if key_mask is not None:
        mask = key_mask if mask is None else (mask & key_mask)
    if mask is None and causal and tq == tk:
        out = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, enable_gqa=gqa)
    else:
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, enable_gqa=gqa)
    return out.transpose(1, 2)


def _sdpa_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                 max_seqlen_q: int | None, max_seqlen_k: int | None,
                 causal: bool = True) -> torch.Tensor:
    """The ``sdpa`` varlen path: the segment layout for self-attention (``cu_seqlens_q`` equal
    to ``cu_seqlens_k``), the masked path otherwise. Both are exact; see docs/training.md,
    "Attention on the CPU". ``max_seqlen_*`` are not trusted (the layout width is measured)."""
    same = cu_seqlens_q is cu_seqlens_k or (
        cu_seqlens_q.shape == cu_seqlens_k.shape and bool(torch.equal(cu_seqlens_q, cu_seqlens_k)))
    if same and q.shape[0] == k.shape[0] and q.shape[0] > 0:
        return _sdpa_segments(q, k, v, cu_seqlens_q, causal)
    return _sdpa_masked(q, k, v, cu_seqlens_q, cu_seqlens_k, causal)


def _sdpa_segments(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   cu_seqlens: torch.Tensor, causal: bool) -> torch.Tensor:
    # Self-attention, O(n_segments x width^2) scores instead of the masked path's O(total^2):
    # each segment is scattered into its own row of an (n, width) layout (zeros after its
    # end), SDPA runs per row, the real tokens are gathered back. Exact: every real query sees
    # the same keys. Causal: the padding slots come after every real query, so the causal mask
    # alone hides them. Non-causal: a key mask hides them (slots < max(len, 1): a row of an
    # empty segment keeps one zero key so that no row is all -inf and no NaN reaches backward).
    dev = q.device
    lens = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    n = lens.numel()
    width = int(lens.max())
    seg = torch.repeat_interleave(torch.arange(n, device=dev), lens)
    local = torch.arange(q.shape[0], device=dev) - cu_seqlens.long()[seg]
    slot = seg * width + local                       # token -> row-major slot in (n, width)

    def spread(x: torch.Tensor) -> torch.Tensor:     # (total, H, D) -> (n, H, width, D)
        out = x.new_zeros((n * width, *x.shape[1:])).index_copy(0, slot, x)
        return out.view(n, width, *x.shape[1:]).transpose(1, 2)

    qs, ks, vs = spread(q), spread(k), spread(v)
    gqa = qs.shape[1] != ks.shape[1]
    if causal:
        out = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=gqa)
    else:
        valid = torch.arange(width, device=dev)[None, :] < lens.clamp(min=1)[:, None]
        out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=valid[:, None, None, :],
                                             enable_gqa=gqa)
    return out.transpose(1, 2).reshape(n * width, *q.shape[1:]).index_select(0, slot)


def _sdpa_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                 causal: bool) -> torch.Tensor:
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


# Head dims the Triton kernel compiles for (fastsynth.kernels.attention.HEAD_DIMS; repeated so
# that choosing a backend does not import triton).
_TRITON_HEAD_DIMS = (16, 32, 64, 128)


def _triton_available() -> bool:
    # A GPU to run on, or the Triton interpreter (TRITON_INTERPRET=1: CPU tensors, for tests).
    if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    try:
        mod = importlib.import_module("fastsynth.kernels.attention")
    except ImportError:  # triton missing
        return False
    return hasattr(mod, "flash_attn_varlen")


# Run eagerly under torch.compile: the kernel's argument checks read cu_seqlens on the host and
# its autotuner prunes candidates in Python, neither of which Dynamo traces; the compiled
# sub-layers around it stay compiled (docs/training.md).
@torch.compiler.disable
def _triton_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal=True):
    from fastsynth.kernels.attention import flash_attn_varlen
    max_q = None if max_q is None else int(max_q)
    max_k = None if max_k is None else int(max_k)
    return flash_attn_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal=causal)


register_backend("flash-attn", varlen=_flash_attn_varlen, available=_flash_attn_available)
register_backend("triton", varlen=_triton_varlen, available=_triton_available)
