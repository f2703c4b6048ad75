"""Fused attention for packed variable-length batches with grouped-query heads (Triton).

FlashAttention-2 schedule: the forward keeps a running max and sum per query row and never
writes the score matrix; the backward recomputes scores from the saved log-sum-exp. What
Triton's fused-attention tutorial lacks and this adds: packed varlen batches (``cu_seqlens``),
grouped-query attention without repeating K/V, q and k lengths that differ (causal aligned
bottom-right), any sequence length (not a multiple of the block), and a CPU path through the
Triton interpreter for tests.

Layout (flash-attn's ``flash_attn_varlen_func`` contract)::

    q: (total_q, Hq, D)    k, v: (total_k, Hkv, D)    Hq % Hkv == 0, D in HEAD_DIMS
    cu_seqlens_q/k: int32 (B + 1,), cu[0] == 0, non-decreasing, cu[-1] == total
    out: (total_q, Hq, D), q's dtype     lse: float32 (Hq, total_q), natural log

Query head ``h`` uses KV head ``h // (Hq // Hkv)``. Sequence ``b`` owns query tokens
``cu_seqlens_q[b]:cu_seqlens_q[b+1]`` and key tokens ``cu_seqlens_k[b]:cu_seqlens_k[b+1]``;
sequences never see each other. Causal, bottom-right aligned (as flash-attn >= 2.1 and the
model's SDPA backend): local query ``i`` sees local key ``j`` iff ``j <= i + len_k - len_q``.
A query row that sees no key (causal with ``len_k < len_q``, or ``len_k == 0``) gets output 0
and lse ``-inf`` (the log of an empty sum; flash-attn 2 writes +inf there), and its gradients
are 0 — the output the SDPA backend of ``fastsynth.model.attention`` gives too.

Kernels (no atomics, so the interpreter runs them exactly):

- ``_fwd_kernel``: one program per (query block, query head, sequence); key blocks that are
  fully visible run without masks, the at most ``BLOCK_M / BLOCK_N + 1`` blocks on the causal
  diagonal or at the sequence end run masked, fully masked blocks are never visited.
- ``_bwd_dkdv_kernel``: one program per (key block, KV head, sequence); loops over the query
  heads of the group and their query blocks, so dK/dV are summed over the group in registers.
- ``_bwd_dq_kernel``: one program per (query block, query head, sequence), as the forward.

Precision: fp16/bf16 (or fp32) in, fp32 accumulation, P and dS rounded to the input dtype
before their matmuls (as FlashAttention-2). fp32 inputs use IEEE fp32 dots (no TF32).
Under ``TRITON_INTERPRET=1`` (set before this module is imported) every dot runs in fp32,
because the interpreter multiplies bf16 bit patterns wrongly (docs/attention.md, "Testing on
the CPU"). Shared pieces of the three kernels are ``@triton.jit`` helpers, inlined by Triton
(docs/attention.md, "Kernel structure").
"""
from __future__ import annotations

import math
import os
import weakref

import torch
import triton
import triton.language as tl

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_LOG2E = 1.4426950408889634      # the kernels spell out log2(e) and ln(2): jit code reads no globals
# Set by tests: fill outputs and gradients with NaN before the kernels run, so an element a
# kernel fails to write shows up as NaN instead of as leftover memory.
POISON = False


# Autotuning candidates on the GPU, (BLOCK_M, BLOCK_N, num_warps, num_stages) per kernel and head
# dim (<= 64, 128): the two fastest of benchmarks/gpu/_tile_sweep.py's wider list on an H200
# (triton 3.6, causal bf16, 2 x 8192 tokens; benchmarks/RESULTS.md, 2026-11-27). Two per kernel:
# each candidate costs a compile (4-7 s there) on first use. FASTSYNTH_ATTENTION_TILES replaces
# them for another card (see _tiles_from_env).
_BUILTIN_SHAPES = {
    ("fwd", 64): [(128, 64, 8, 3), (128, 128, 4, 3)],
    ("fwd", 128): [(128, 64, 8, 3), (128, 128, 8, 3)],
    ("dq", 64): [(128, 64, 4, 3), (64, 64, 4, 3)],
    ("dq", 128): [(128, 64, 8, 3), (64, 64, 4, 2)],
    ("dkdv", 64): [(64, 64, 4, 3), (32, 128, 4, 3)],
    ("dkdv", 128): [(32, 64, 4, 3), (64, 128, 8, 2)],
}
TILES_ENV = "FASTSYNTH_ATTENTION_TILES"


def load_tiles(path: str) -> dict[tuple[str, int], list[tuple[int, int, int, int]]]:
    """Autotuning candidates from a JSON file, as written by ``benchmarks/gpu/_tile_sweep.py``
    (docs/attention.md, "Tiles for another GPU"): ``{"fwd" | "dq" | "dkdv": {"64" | "128":
    [[BLOCK_M, BLOCK_N, num_warps, num_stages], ...]}}``. The entries it holds replace the
    built-in ones of that kernel and head dim. Raises ValueError naming the file and the entry."""
    import json
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{TILES_ENV}={path}: cannot read the tiles file: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{TILES_ENV}={path}: expected a JSON object, got {type(doc).__name__}")
    tiles = {}
    for kernel, per_dim in doc.items():
        if kernel not in ("fwd", "dq", "dkdv") or not isinstance(per_dim, dict):
            raise ValueError(f"{TILES_ENV}={path}: key {kernel!r}: expected one of 'fwd', 'dq', "
                             "'dkdv' mapping head dims to tile lists")
        for dim, shapes in per_dim.items():
            where = f"{TILES_ENV}={path}: {kernel}.{dim}"
            if dim not in ("64", "128"):
                raise ValueError(f"{where}: head dim must be \"64\" (all dims <= 64) or \"128\"")
            if not isinstance(shapes, list) or not shapes:
                raise ValueError(f"{where}: expected a non-empty list of tiles")
            for t in shapes:
                ok = (isinstance(t, list) and len(t) == 4
                      and all(isinstance(x, int) and not isinstance(x, bool) for x in t))
                if not ok or t[0] < 16 or t[1] < 16 or any(x & (x - 1) for x in t[:3]) \
                        or t[2] > 16 or not 1 <= t[3] <= 8:
                    raise ValueError(f"{where}: tile {t!r} is not [BLOCK_M, BLOCK_N, num_warps, "
                                     "num_stages] with power-of-two blocks >= 16, power-of-two "
                                     "warps <= 16 and 1-8 stages")
            tiles[(kernel, int(dim))] = [tuple(t) for t in shapes]
    return tiles


def _tiles_from_env() -> dict[tuple[str, int], list[tuple[int, int, int, int]]]:
    """The built-in candidates, with those of the file named by FASTSYNTH_ATTENTION_TILES (read
    once, when this module is imported) in their place."""
    shapes = dict(_BUILTIN_SHAPES)
    path = os.environ.get(TILES_ENV)
    if path:
        shapes.update(load_tiles(path))
    return shapes


_GPU_SHAPES = _tiles_from_env()


def _shape(c: triton.Config) -> tuple[int, int, int, int]:
    return c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages


def _configs(kernel: str) -> list[triton.Config]:
    """Autotuning candidates (CUDA: all head dims; see _prune) or the one configuration the
    interpreter runs: unequal blocks (BLOCK_M != BLOCK_N) so that short test sequences cross
    block edges and every masked/unmasked split is exercised, large enough to keep the
    interpreter's per-block overhead down."""
    if _INTERPRET:
        m, n = {"fwd": (128, 64), "dkdv": (64, 128), "dq": (128, 64)}[kernel]
        return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=4, num_stages=1)]
    shapes = dict.fromkeys(_GPU_SHAPES[(kernel, 64)] + _GPU_SHAPES[(kernel, 128)])
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n, w, s in shapes]


def _prune(kernel: str):
    """early_config_prune: keep the candidates listed for the launch's head dim."""
    def prune(configs, named_args, **kwargs):
        head_dim = kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM"))
        if head_dim is None or len(configs) == 1:   # unknown call shape: time them all
            return configs
        wanted = _GPU_SHAPES[(kernel, 64 if head_dim <= 64 else 128)]
        return [c for c in configs if _shape(c) in wanted] or configs
    return {"early_config_prune": prune}


# Tuned once per (head dim, causal, group, precision, power-of-two bucket of the longest
# sequence): the best tiles for 2k-token documents and for 16k-token ones differ, while timing
# every exact length would cost more GPU time than it saves.
_KEY = ["HEAD_DIM", "CAUSAL", "GROUP", "PREC", "seq_bucket"]


@triton.jit
def _seq_bounds(cu_q, cu_k, b):
    """(first query token, query length, first key token, key length) of sequence ``b``."""
    q_start = tl.load(cu_q + b)
    len_q = tl.load(cu_q + b + 1) - q_start
    k_start = tl.load(cu_k + b)
    len_k = tl.load(cu_k + b + 1) - k_start
    return q_start, len_q, k_start, len_k


@triton.jit
def _load_rows(base, rows, stride_t, head, offs_d, ok):
    """The ``(len(rows), D)`` tile of tokens ``rows`` of one head: element ``d`` of token ``t``
    at ``base + t * stride_t + head + d``; rows where ``ok`` is false read 0."""
    return tl.load(base + rows[:, None] * stride_t + head + offs_d[None, :], mask=ok[:, None],
                   other=0.0)


@triton.jit
def _store_rows(base, rows, stride_t, head, offs_d, ok, value):
    """Store ``value`` into the tile :func:`_load_rows` reads, rows where ``ok`` is true."""
    tl.store(base + rows[:, None] * stride_t + head + offs_d[None, :],
             value.to(base.dtype.element_ty), mask=ok[:, None])


@triton.jit
def _key_range(m0, len_q, len_k, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
               BLOCK_N: tl.constexpr):
    """Keys of the query block starting at local row ``m0``: ``(shift, full_end, hi)``, with
    ``shift = len_k - len_q`` (bottom-right causal alignment; 0 when not causal). Key blocks in
    ``[0, full_end)`` are visible to every row of the block and run without masks; the keys in
    ``[full_end, hi)`` are visible to some row and run masked; keys from ``hi`` on are hidden
    from the whole block and never visited."""
    if CAUSAL:
        shift = len_k - len_q
        hi = tl.maximum(tl.minimum(len_k, m0 + BLOCK_M + shift), 0)
        full = tl.maximum(tl.minimum(len_k, m0 + shift + 1), 0)
    else:
        shift = 0
        hi = len_k
        full = len_k
    return shift, (full // BLOCK_N) * BLOCK_N, hi


@triton.jit
def _lse_log2(lse):
    """A row's log-sum-exp in the log2 domain of the scores. ``-inf`` marks a row that sees
    no key; ``+inf`` there makes its P (and so dS) exactly 0."""
    return tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)


@triton.jit
def _scores(x, yt, q_pos, k_pos, k_ok, shift, qk_scale, MASK: tl.constexpr,
            CAUSAL: tl.constexpr, DOT_T: tl.constexpr, PREC: tl.constexpr):
    """The score tile ``x @ yt`` in the log2 domain (``qk_scale`` includes log2(e)): queries x
    keys when ``x`` is Q, keys x queries (transposed) when ``x`` is K. With ``MASK``, ``-inf``
    where a key is hidden: ``k_ok`` false (past the sequence) or, ``CAUSAL``, the key after the
    query's diagonal (``k_pos > q_pos + shift``). ``q_pos``, ``k_pos`` and ``k_ok`` come
    broadcastable to the tile's orientation."""
    s = tl.dot(x.to(DOT_T), yt.to(DOT_T), input_precision=PREC) * qk_scale
    if MASK:
        ok = k_ok
        if CAUSAL:
            ok = ok & (k_pos <= q_pos + shift)
        s = tl.where(ok, s, float("-inf"))
    return s


@triton.jit
def _probs(x, yt, q_pos, k_pos, k_ok, lse2, shift, qk_scale, MASK: tl.constexpr,
           CAUSAL: tl.constexpr, DOT_T: tl.constexpr, PREC: tl.constexpr):
    """Backward: the softmax probabilities P = exp2(S - lse2) of a tile recomputed from the
    saved log-sum-exp (``lse2`` from :func:`_lse_log2`, broadcastable over the key axis);
    arguments and orientation as :func:`_scores`. Hidden keys get P = 0."""
    return tl.math.exp2(_scores(x, yt, q_pos, k_pos, k_ok, shift, qk_scale, MASK, CAUSAL,
                                DOT_T, PREC) - lse2)


@triton.jit
def _fwd_blocks(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d,
                lo, hi, len_k, shift, qk_scale,
                MASK: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr,
                DOT_T: tl.constexpr, PREC: tl.constexpr):
    # Scores are kept in the log2 domain (qk_scale includes log2(e)) so exp2 can be used.
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kt_ptrs = k_base + offs_n[None, :] * stride_kt + offs_d[:, None]     # (D, BLOCK_N)
        v_ptrs = v_base + offs_n[:, None] * stride_vt + offs_d[None, :]      # (BLOCK_N, D)
        kmask = offs_n < len_k
        if MASK:
            kt = tl.load(kt_ptrs, mask=kmask[None, :], other=0.0)
            v = tl.load(v_ptrs, mask=kmask[:, None], other=0.0)
        else:
            kt = tl.load(kt_ptrs)
            v = tl.load(v_ptrs)
        s = _scores(q, kt, offs_m[:, None], offs_n[None, :], kmask[None, :], shift,
                    qk_scale, MASK, CAUSAL, DOT_T, PREC)
        if MASK:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # a row with every key masked so far keeps m = -inf; subtract 0 instead (p = 0)
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_use = m_new
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype).to(DOT_T), v.to(DOT_T), acc * alpha[:, None], input_precision=PREC)
        m_i = m_new
    return acc, l_i, m_i


@triton.autotune(configs=_configs("fwd"), key=_KEY, prune_configs_by=_prune("fwd"))
@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, cu_q, cu_k, qk_scale, seq_bucket,
                stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
                stride_ot, stride_oh, stride_lh,
                HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, GROUP: tl.constexpr,
                DOT_T: tl.constexpr, PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # Longest causal rows first: the last query blocks of a sequence do the most work.
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)
    h = tl.program_id(1)
    b = tl.program_id(2)
    q_start, len_q, k_start, len_k = _seq_bounds(cu_q, cu_k, b)
    m0 = start_m * BLOCK_M
    if m0 < len_q:
        offs_m = m0 + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < len_q
        q = _load_rows(Q, q_start + offs_m, stride_qt, h * stride_qh, offs_d, row_ok)
        hk = h // GROUP
        k_base = K + k_start * stride_kt + hk * stride_kh
        v_base = V + k_start * stride_vt + hk * stride_vh
        shift, full_end, hi = _key_range(m0, len_q, len_k, CAUSAL, BLOCK_M, BLOCK_N)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        acc, l_i, m_i = _fwd_blocks(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt,
                                    offs_m, offs_d, 0, full_end, len_k, shift, qk_scale,
                                    False, CAUSAL, BLOCK_N, DOT_T, PREC)
        acc, l_i, m_i = _fwd_blocks(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt,
                                    offs_m, offs_d, full_end, hi, len_k, shift, qk_scale,
                                    True, CAUSAL, BLOCK_N, DOT_T, PREC)
        empty = l_i == 0.0                       # no visible key: output 0, lse -inf
        l_safe = tl.where(empty, 1.0, l_i)
        out = acc / l_safe[:, None]
        lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * 0.6931471805599453)
        _store_rows(O, q_start + offs_m, stride_ot, h * stride_oh, offs_d, row_ok, out)
        tl.store(LSE + h * stride_lh + q_start + offs_m, lse, mask=row_ok)


@triton.jit
def _bwd_dq_blocks(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d,
                   lo, hi, len_k, shift, qk_scale,
                   MASK: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr,
                   DOT_T: tl.constexpr, PREC: tl.constexpr):
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        k_ptrs = k_base + offs_n[:, None] * stride_kt + offs_d[None, :]      # (BLOCK_N, D)
        v_ptrs = v_base + offs_n[:, None] * stride_vt + offs_d[None, :]
        kmask = offs_n < len_k
        if MASK:
            k = tl.load(k_ptrs, mask=kmask[:, None], other=0.0)
            v = tl.load(v_ptrs, mask=kmask[:, None], other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        p = _probs(q, tl.trans(k), offs_m[:, None], offs_n[None, :], kmask[None, :],
                   lse2[:, None], shift, qk_scale, MASK, CAUSAL, DOT_T, PREC)
        dp = tl.dot(do.to(DOT_T), tl.trans(v).to(DOT_T), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype).to(DOT_T), k.to(DOT_T), dq, input_precision=PREC)
    return dq


@triton.autotune(configs=_configs("dq"), key=_KEY, prune_configs_by=_prune("dq"))
@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, cu_q, cu_k, qk_scale, sm_scale, seq_bucket,
                   stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
                   stride_dot, stride_doh, stride_dqt, stride_dqh, stride_lh,
                   HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, GROUP: tl.constexpr,
                   DOT_T: tl.constexpr, PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)
    h = tl.program_id(1)
    b = tl.program_id(2)
    q_start, len_q, k_start, len_k = _seq_bounds(cu_q, cu_k, b)
    m0 = start_m * BLOCK_M
    if m0 < len_q:
        offs_m = m0 + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < len_q
        rows = q_start + offs_m
        # rows past the sequence load q = dO = 0, lse = delta = 0: their dS is exactly 0
        q = _load_rows(Q, rows, stride_qt, h * stride_qh, offs_d, row_ok)
        do = _load_rows(DO, rows, stride_dot, h * stride_doh, offs_d, row_ok)
        lse = tl.load(LSE + h * stride_lh + q_start + offs_m, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + h * stride_lh + q_start + offs_m, mask=row_ok, other=0.0)
        lse2 = _lse_log2(lse)
        hk = h // GROUP
        k_base = K + k_start * stride_kt + hk * stride_kh
        v_base = V + k_start * stride_vt + hk * stride_vh
        shift, full_end, hi = _key_range(m0, len_q, len_k, CAUSAL, BLOCK_M, BLOCK_N)
        dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        dq = _bwd_dq_blocks(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_vt,
                            offs_m, offs_d, 0, full_end, len_k, shift, qk_scale,
                            False, CAUSAL, BLOCK_N, DOT_T, PREC)
        dq = _bwd_dq_blocks(dq, q, do, lse2, delta, k_base, v_base, stride_kt, stride_vt,
                            offs_m, offs_d, full_end, hi, len_k, shift, qk_scale,
                            True, CAUSAL, BLOCK_N, DOT_T, PREC)
        _store_rows(DQ, rows, stride_dqt, h * stride_dqh, offs_d, row_ok, dq * sm_scale)


@triton.jit
def _bwd_dkdv_blocks(dk, dv, k, v, q_base, do_base, lse_base, delta_base,
                     stride_qt, stride_dot, offs_n, offs_d, lo, hi, len_q, shift, qk_scale,
                     MASK: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
                     DOT_T: tl.constexpr, PREC: tl.constexpr):
    # Transposed scores (keys x queries) so dK and dV accumulate without transposes.
    # Rows past the query sequence load q = dO = 0 and lse = delta = 0: P = 1 there, but
    # P^T dO and dS^T q are exactly 0, so no row mask is needed; keys past len_k are never
    # stored (each key's dK/dV row depends only on that key).
    offs_m0 = tl.arange(0, BLOCK_M)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0
        row_ok = offs_m < len_q
        q = _load_rows(q_base, offs_m, stride_qt, 0, offs_d, row_ok)
        do = _load_rows(do_base, offs_m, stride_dot, 0, offs_d, row_ok)
        lse = tl.load(lse_base + offs_m, mask=row_ok, other=0.0)
        delta = tl.load(delta_base + offs_m, mask=row_ok, other=0.0)
        # k_ok = True: keys past len_k need no mask (see above)
        pt = _probs(k, tl.trans(q), offs_m[None, :], offs_n[:, None], True,
                    _lse_log2(lse)[None, :], shift, qk_scale, MASK, CAUSAL, DOT_T, PREC)  # (N, M)
        dv = tl.dot(pt.to(do.dtype).to(DOT_T), do.to(DOT_T), dv, input_precision=PREC)
        dpt = tl.dot(v.to(DOT_T), tl.trans(do).to(DOT_T), input_precision=PREC)
        dst = pt * (dpt - delta[None, :])
        dk = tl.dot(dst.to(q.dtype).to(DOT_T), q.to(DOT_T), dk, input_precision=PREC)
    return dk, dv


@triton.autotune(configs=_configs("dkdv"), key=_KEY, prune_configs_by=_prune("dkdv"))
@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, cu_q, cu_k, qk_scale, sm_scale, seq_bucket,
                     stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
                     stride_dot, stride_doh, stride_dkt, stride_dkh, stride_dvt, stride_dvh,
                     stride_lh,
                     HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, GROUP: tl.constexpr,
                     DOT_T: tl.constexpr, PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    start_n = tl.num_programs(0) - 1 - tl.program_id(0)
    hk = tl.program_id(1)
    b = tl.program_id(2)
    q_start, len_q, k_start, len_k = _seq_bounds(cu_q, cu_k, b)
    n0 = start_n * BLOCK_N
    if n0 < len_k:
        offs_n = n0 + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        col_ok = offs_n < len_k
        cols = k_start + offs_n
        k = _load_rows(K, cols, stride_kt, hk * stride_kh, offs_d, col_ok)
        v = _load_rows(V, cols, stride_vt, hk * stride_vh, offs_d, col_ok)
        end_q = tl.cdiv(len_q, BLOCK_M) * BLOCK_M
        if CAUSAL:
            shift = len_k - len_q
            # query i sees key j iff i >= j - shift: rows below n0 - shift see none of the
            # block, rows from n0 + BLOCK_N - 1 - shift on see all of it
            lo = (tl.maximum(n0 - shift, 0) // BLOCK_M) * BLOCK_M
            full = tl.cdiv(tl.maximum(n0 + BLOCK_N - 1 - shift, 0), BLOCK_M) * BLOCK_M
            lo = tl.minimum(lo, end_q)
            full = tl.minimum(full, end_q)
        else:
            shift = 0
            lo = 0
            full = 0
        dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
        dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
        for g in range(0, GROUP):               # the group's query heads share this K/V block
            h = hk * GROUP + g
            q_base = Q + q_start * stride_qt + h * stride_qh
            do_base = DO + q_start * stride_dot + h * stride_doh
            lse_base = LSE + h * stride_lh + q_start
            delta_base = DELTA + h * stride_lh + q_start
            dk, dv = _bwd_dkdv_blocks(dk, dv, k, v, q_base, do_base, lse_base, delta_base,
                                      stride_qt, stride_dot, offs_n, offs_d, lo, full, len_q,
                                      shift, qk_scale, True, CAUSAL, BLOCK_M, DOT_T, PREC)
            dk, dv = _bwd_dkdv_blocks(dk, dv, k, v, q_base, do_base, lse_base, delta_base,
                                      stride_qt, stride_dot, offs_n, offs_d, full, end_q, len_q,
                                      shift, qk_scale, False, CAUSAL, BLOCK_M, DOT_T, PREC)
        _store_rows(DK, cols, stride_dkt, hk * stride_dkh, offs_d, col_ok, dk * sm_scale)
        _store_rows(DV, cols, stride_dvt, hk * stride_dvh, offs_d, col_ok, dv)


# ------------------------------------------------------------------------------ host side

def _check_seqlens(name: str, cu: torch.Tensor, max_seqlen: int | None, max_name: str) -> None:
    """Type and shape checks of one cu_seqlens and its max_seqlen (values: in _validate)."""
    if not isinstance(cu, torch.Tensor) or cu.dtype != torch.int32 or cu.dim() != 1:
        got = f"{cu.dtype} {tuple(cu.shape)}" if isinstance(cu, torch.Tensor) else type(cu).__name__
        raise ValueError(f"{name} must be a 1-D int32 tensor (batch + 1,), got {got}")
    if cu.numel() < 2:
        raise ValueError(f"{name} must hold at least 2 offsets (one sequence), got {cu.numel()}")
    if max_seqlen is not None and (isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int)
                                   or max_seqlen < 0):
        raise ValueError(f"{max_name} must be a non-negative int or None, got {max_seqlen!r}")


def _seqlen_facts(cu: torch.Tensor) -> torch.Tensor:
    """(first offset, last offset, shortest, longest sequence) on cu's device."""
    lens = cu[1:] - cu[:-1]
    return torch.stack([cu[0], cu[-1], lens.min(), lens.max()]).to(torch.int64)


def _validate(q, k, v, cu_q, cu_k, max_q, max_k) -> tuple[int, int]:
    """Every documented argument check, before any kernel launch; returns (max_q, max_k)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 3-D tensor (total, heads, head_dim), got {got}")
    if q.dtype not in DTYPES:
        raise ValueError(f"q has unsupported dtype {q.dtype}; supported: {DTYPES}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name} dtype {t.dtype} differs from q's {q.dtype}")
    if q.shape[2] not in HEAD_DIMS:
        raise ValueError(f"q head dim {q.shape[2]} unsupported; supported: {HEAD_DIMS}")
    if k.shape[2] != q.shape[2] or v.shape != k.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must both be "
                         f"(total_k, Hkv, {q.shape[2]})")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"k has {k.shape[1]} heads; q's {q.shape[1]} heads must be a multiple")
    for name, t in (("k", k), ("v", v), ("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
        if isinstance(t, torch.Tensor) and t.device != q.device:
            raise ValueError(f"{name} is on {t.device}, q on {q.device}: all must share a device")
    _check_seqlens("cu_seqlens_q", cu_q, max_q, "max_seqlen_q")
    _check_seqlens("cu_seqlens_k", cu_k, max_k, "max_seqlen_k")
    if cu_q.numel() != cu_k.numel():
        raise ValueError(f"cu_seqlens_q has {cu_q.numel()} offsets, cu_seqlens_k "
                         f"{cu_k.numel()}: both must be (batch + 1,)")
    if cu_q.numel() - 1 > 65535:
        raise ValueError(f"cu_seqlens_q holds {cu_q.numel() - 1} sequences; at most 65535")
    key = (q.shape[0], k.shape[0], max_q, max_k, _version(cu_q), _version(cu_k))
    if _last_checked is not None and _last_checked[0]() is cu_q and _last_checked[1]() is cu_k \
            and _last_checked[2] == key and None not in key:
        return _last_checked[3]          # same live, unmodified offsets as the previous call
    facts = torch.cat([_seqlen_facts(cu_q), _seqlen_facts(cu_k)]).tolist()  # the one host sync
    maxes = []
    for (name, total, mx, mname), (first, last, lmin, lmax) in zip(
            (("cu_seqlens_q", q.shape[0], max_q, "max_seqlen_q"),
             ("cu_seqlens_k", k.shape[0], max_k, "max_seqlen_k")),
            (facts[:4], facts[4:])):
        if first != 0:
            raise ValueError(f"{name} must start at 0, starts at {first}")
        if lmin < 0:
            raise ValueError(f"{name} must be non-decreasing")
        if last != total:
            raise ValueError(f"{name}[-1] = {last} must equal the token count {total}")
        if mx is not None and mx < lmax:
            raise ValueError(f"{mname} = {mx} is shorter than the longest sequence ({lmax})")
        maxes.append(lmax if mx is None else mx)
    _remember(cu_q, cu_k, key, (maxes[0], maxes[1]))
    return maxes[0], maxes[1]


# The value checks need a device-to-host copy, which stalls the CPU until the GPU catches up.
# Every layer of a model step passes the same cu_seqlens tensors, so the last validated pair is
# remembered (weak references: a new batch is a new tensor; _version changes on in-place writes).
_last_checked: tuple | None = None


def _version(t: torch.Tensor) -> int | None:
    """t's in-place write counter; None for inference-mode tensors, which have none."""
    try:
        return t._version
    except RuntimeError:
        return None


def _remember(cu_q: torch.Tensor, cu_k: torch.Tensor, key: tuple, maxes: tuple[int, int]) -> None:
    global _last_checked
    _last_checked = (weakref.ref(cu_q), weakref.ref(cu_k), key, maxes)


def _alloc(shape, dtype, device) -> torch.Tensor:
    if POISON:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _dot_args(dtype: torch.dtype) -> dict:
    """Operand type and precision of every tl.dot: the input dtype on the GPU (fp32 inputs in
    IEEE fp32, not TF32); fp32 under the interpreter, which multiplies bf16 bit patterns."""
    if _INTERPRET or dtype == torch.float32:
        return {"DOT_T": tl.float32, "PREC": "ieee"}
    return {"DOT_T": tl.float16 if dtype == torch.float16 else tl.bfloat16, "PREC": "tf32"}


def _bucket(max_q: int, max_k: int) -> int:
    """The autotuning bucket of a launch: the longest sequence rounded up to a power of two."""
    return triton.next_power_of_2(max(max_q, max_k, 1))


def _forward(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale):
    total_q, hq, d = q.shape
    hkv = k.shape[1]
    out = _alloc(q.shape, q.dtype, q.device)
    lse = _alloc((hq, total_q), torch.float32, q.device)
    batch = cu_q.numel() - 1
    if total_q == 0 or max_q == 0:
        return out, lse
    grid = lambda meta: (triton.cdiv(max_q, meta["BLOCK_M"]), hq, batch)  # noqa: E731
    _fwd_kernel[grid](q, k, v, out, lse, cu_q, cu_k, scale * _LOG2E, _bucket(max_q, max_k),
                      q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                      out.stride(0), out.stride(1), lse.stride(0),
                      HEAD_DIM=d, CAUSAL=causal, GROUP=hq // hkv,
                      **_dot_args(q.dtype))
    return out, lse


def _backward(do, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, causal, scale):
    total_q, hq, d = q.shape
    hkv = k.shape[1]
    do = _last_dim_contiguous(do)
    dq = _alloc(q.shape, q.dtype, q.device)
    dk = _alloc(k.shape, k.dtype, k.device)
    dv = _alloc(v.shape, v.dtype, v.device)
    # delta_i = sum_d dO_id * O_id = rowsum(P * dP), the softmax-gradient correction term
    delta = (do.float() * out.float()).sum(-1).t().contiguous()          # (Hq, total_q)
    batch = cu_q.numel() - 1
    bucket = _bucket(max_q, max_k)
    if k.shape[0] > 0 and max_k > 0:
        grid_kv = lambda meta: (triton.cdiv(max_k, meta["BLOCK_N"]), hkv, batch)  # noqa: E731
        _bwd_dkdv_kernel[grid_kv](
            q, k, v, do, lse, delta, dk, dv, cu_q, cu_k, scale * _LOG2E, scale, bucket,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            do.stride(0), do.stride(1), dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1),
            lse.stride(0), HEAD_DIM=d, CAUSAL=causal, GROUP=hq // hkv, **_dot_args(q.dtype))
    if total_q > 0 and max_q > 0:
        grid_q = lambda meta: (triton.cdiv(max_q, meta["BLOCK_M"]), hq, batch)  # noqa: E731
        _bwd_dq_kernel[grid_q](
            q, k, v, do, lse, delta, dq, cu_q, cu_k, scale * _LOG2E, scale, bucket,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            do.stride(0), do.stride(1), dq.stride(0), dq.stride(1), lse.stride(0),
            HEAD_DIM=d, CAUSAL=causal, GROUP=hq // hkv, **_dot_args(q.dtype))
    return dq, dk, dv


class FlashAttnVarlen(torch.autograd.Function):
    """Autograd wrapper: ``apply(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale)`` ->
    ``(out, lse)``; arguments already validated (see :func:`flash_attn_varlen`). lse carries
    no gradient."""

    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_q, max_k, causal, scale):
        out, lse = _forward(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
        ctx.meta = (max_q, max_k, causal, scale)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
        max_q, max_k, causal, scale = ctx.meta
        dq, dk, dv = _backward(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, causal, scale)
        return dq, dk, dv, None, None, None, None, None, None


def flash_attn_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                      max_seqlen_q: int | None, max_seqlen_k: int | None, causal: bool = True,
                      softmax_scale: float | None = None, return_lse: bool = False):
    """Attention over packed variable-length sequences; differentiable in q, k and v.

    Args:
        q: ``(total_q, Hq, D)`` fp16, bf16 or fp32; D in :data:`HEAD_DIMS`.
        k, v: ``(total_k, Hkv, D)``, q's dtype and device; ``Hq % Hkv == 0``, query head ``h``
            uses KV head ``h // (Hq // Hkv)`` (K/V are never repeated in memory).
        cu_seqlens_q, cu_seqlens_k: int32 ``(batch + 1,)`` offsets: start at 0,
            non-decreasing, last entry = total_q (total_k). Sequence ``b`` is
            ``q[cu_seqlens_q[b]:cu_seqlens_q[b+1]]`` against ``k/v[cu_seqlens_k[b]:...]``.
        max_seqlen_q, max_seqlen_k: upper bounds of the sequence lengths (sizes the launch
            grid); None computes them.
        causal: bottom-right aligned mask: local query ``i`` sees local key ``j`` iff
            ``j <= i + len_k - len_q``. Rows that see no key output 0 (lse ``-inf``).
        softmax_scale: defaults to ``1 / sqrt(D)``.
        return_lse: also return the log-sum-exp.

    Returns:
        ``out`` ``(total_q, Hq, D)`` in q's dtype, or ``(out, lse)`` with lse float32
        ``(Hq, total_q)``: natural-log ``log sum_j exp(scale * q_i . k_j)`` over visible keys.

    Raises:
        ValueError naming the argument (shapes, dtypes, devices, head dim, head ratio,
        cu_seqlens values, max_seqlen too small) before any kernel is launched. The value
        checks cost one device-to-host copy of 8 numbers, skipped when the same (unmodified)
        cu_seqlens tensors were checked by the previous call, as in every layer of a model.
    """
    max_q, max_k = _validate(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    scale = 1.0 / math.sqrt(q.shape[2]) if softmax_scale is None else float(softmax_scale)
    q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
    out, lse = FlashAttnVarlen.apply(q, k, v, cu_seqlens_q, cu_seqlens_k, max_q, max_k,
                                     bool(causal), scale)
    return (out, lse) if return_lse else out
