"""Attention on the GPU: the Triton kernel (fastsynth.kernels.attention) against PyTorch SDPA and
flash-attn (when installed), causal, bf16, forward and forward+backward, TFLOP/s.

Shapes: head dim 128 with 24 query / 8 KV heads (the llama-3.2-3b preset) and head dim 64 with
32 / 8 heads; N = 2k..16k tokens per sequence, B = 16384 / N sequences (flash-attn's benchmark
layout). The Triton kernel and flash-attn get the packed varlen layout with GQA as is; SDPA gets
(B, H, N, D) with K/V repeated to the query heads beforehand (outside the timing), once with its
FlashAttention-2 backend forced (``sdpa``) and once with cuDNN's fused attention (``sdpa-cudnn``,
faster on Hopper), so it does the same FLOPs (its backward even skips summing dK/dV over each
group, which the others do).
FLOPs: 4*B*Hq*N^2*D, x0.5 causal, x3.5 for forward+backward (run.FLOP_CONVENTION).
Timing: triton.testing.do_bench median, after a first call that compiles and autotunes.

After timing, one correctness row per head dim: a varlen batch (lengths 1..2055) against a
float64 reference, with flash-attn's tolerance (error <= 2x forward, 3x gradients, of the error
of plain PyTorch attention computed in bf16).
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn.functional as F

TOTAL_TOKENS = 16384
SHAPES = [(128, 24, 8), (64, 32, 8)]           # (head dim, query heads, KV heads)
SEQLENS = [8192, 2048, 4096, 16384]            # 8k first: the target case
CHECK_LENS = [1, 100, 1000, 2055]


def attention_flops(batch: int, heads: int, n: int, d: int, causal: bool, mode: str) -> float:
    f = 4.0 * batch * heads * n * n * d * (0.5 if causal else 1.0)
    return f * 3.5 if mode == "fwd+bwd" else f


def _flash_attn():
    try:
        from flash_attn import flash_attn_varlen_func
        return flash_attn_varlen_func
    except ImportError:
        return None


def _sdpa(backend: str):
    """A context forcing one of SDPA's kernels (``FLASH_ATTENTION``: FlashAttention-2;
    ``CUDNN_ATTENTION``: cuDNN's fused attention)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel(getattr(SDPBackend, backend))


def _naive(q, k, v, causal: bool = True):
    """One sequence, (L, H, D) each (K/V already repeated to the query heads), in the inputs'
    dtype: scores, softmax and P @ V each rounded to it (flash-attn's reference at low
    precision); float64 inputs give the truth."""
    s = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(q.shape[-1])
    if causal:
        n, m = q.shape[0], k.shape[0]
        hidden = torch.ones(n, m, dtype=torch.bool, device=q.device).triu(m - n + 1)
        s = s.masked_fill(hidden, float("-inf"))
    return torch.einsum("hij,jhd->ihd", torch.softmax(s, dim=-1), v)


def _correctness(device, d: int, hq: int, hkv: int) -> dict:
    """Kernel vs float64 reference on a packed causal batch, beside PyTorch's bf16 error."""
    from fastsynth.kernels.attention import flash_attn_varlen
    g = torch.Generator(device="cpu").manual_seed(d)
    total = sum(CHECK_LENS)
    cu = torch.tensor([0, *torch.tensor(CHECK_LENS).cumsum(0).tolist()], dtype=torch.int32, device=device)
    q, k, v = (torch.randn(total, h, d, generator=g).to(device, torch.bfloat16) for h in (hq, hkv, hkv))
    dout = torch.randn(total, hq, d, generator=g).to(device, torch.bfloat16)
    res = {}
    for name, dtype in (("kernel", torch.bfloat16), ("f64", torch.float64), ("torch", torch.bfloat16)):
        xs = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        if name == "kernel":
            out = flash_attn_varlen(*xs, cu, cu, max(CHECK_LENS), max(CHECK_LENS), causal=True)
        else:
            bounds = zip(cu[:-1].tolist(), cu[1:].tolist())
            out = torch.cat([_naive(xs[0][s:e], *(x[s:e].repeat_interleave(hq // hkv, 1) for x in xs[1:]))
                             for s, e in bounds])
        out.backward(dout.to(dtype))
        res[name] = [out.detach().double()] + [x.grad.double() for x in xs]
    errs = {}
    ok = True
    for i, what in enumerate(("out", "dq", "dk", "dv")):
        mine = (res["kernel"][i] - res["f64"][i]).abs().max().item()
        torch_err = (res["torch"][i] - res["f64"][i]).abs().max().item()
        ok &= bool(mine <= (2.0 if what == "out" else 3.0) * torch_err + 1e-5)
        errs[what] = f"{mine:.2g}/{torch_err:.2g}"
    return {"case": f"correctness hd{d} Hq{hq}/Hkv{hkv} bf16 causal lens {CHECK_LENS}",
            "backend": "triton", "ok": ok,
            "note": "max err vs f64, kernel/torch-bf16: " + ", ".join(f"{k} {v}" for k, v in errs.items())}


def _bench(fn, grads):
    import triton.testing
    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")


def run(device, deadline: float | None = None) -> list[dict]:
    import triton

    from fastsynth.kernels.attention import flash_attn_varlen
    fa = _flash_attn()
    rows = []
    for d, hq, hkv in SHAPES:
        for n in SEQLENS:
            case = f"causal hd{d} Hq{hq}/Hkv{hkv} bf16 N={n} B={TOTAL_TOKENS // n}"
            if deadline is not None and time.monotonic() > deadline - 15:
                rows.append({"case": case, "note": "skipped: time budget"})
                continue
            b = TOTAL_TOKENS // n
            g = torch.Generator(device="cpu").manual_seed(n + d)
            q = torch.randn(b * n, hq, d, generator=g).to(device, torch.bfloat16)
            k = torch.randn(b * n, hkv, d, generator=g).to(device, torch.bfloat16)
            v = torch.randn(b * n, hkv, d, generator=g).to(device, torch.bfloat16)
            dout = torch.randn_like(q)
            cu = torch.arange(0, b + 1, dtype=torch.int32, device=device) * n
            # SDPA layout (B, H, N, D), K/V repeated to the query heads once, outside the timing
            q4 = q.view(b, n, hq, d).transpose(1, 2).contiguous()
            k4, v4 = (t.view(b, n, hkv, d).transpose(1, 2).repeat_interleave(hq // hkv, 1)
                      .contiguous() for t in (k, v))
            dout4 = dout.view(b, n, hq, d).transpose(1, 2).contiguous()
            def ours(q_, k_, v_):
                return flash_attn_varlen(q_, k_, v_, cu, cu, n, n, causal=True)

            def sdpa(q_, k_, v_):
                return F.scaled_dot_product_attention(q_, k_, v_, is_causal=True)

            def theirs(q_, k_, v_):
                return fa(q_, k_, v_, cu, cu, n, n, causal=True)

            impls = {"triton": ((q, k, v), dout, ours, contextlib.nullcontext),
                     "sdpa": ((q4, k4, v4), dout4, sdpa, lambda: _sdpa("FLASH_ATTENTION")),
                     "sdpa-cudnn": ((q4, k4, v4), dout4, sdpa, lambda: _sdpa("CUDNN_ATTENTION"))}
            if fa is not None:
                impls["flash-attn"] = ((q, k, v), dout, theirs, contextlib.nullcontext)
            for mode in ("fwd", "fwd+bwd"):
                times = {}
                for name, (ins, do, f, context) in impls.items():
                    try:
                        with context():
                            if mode == "fwd":
                                with torch.no_grad():
                                    ms = _bench(lambda: f(*ins), None)
                            else:
                                xs = [t.detach().requires_grad_() for t in ins]
                                ms = _bench(lambda: f(*xs).backward(do), xs)
                        times[name] = ms
                    except Exception as exc:  # e.g. SDPA's flash backend refusing a shape
                        rows.append({"case": case, "pass": mode, "backend": name,
                                     "note": f"failed: {type(exc).__name__}: {str(exc)[:120]}"})
                fl = attention_flops(b, hq, n, d, True, mode)
                for name, ms in times.items():
                    row = {"case": case, "pass": mode, "backend": name, "ms": ms,
                           "TFLOP/s": fl / (ms * 1e-3) / 1e12}
                    if not name.startswith("sdpa"):
                        for anchor in ("sdpa", "sdpa-cudnn"):
                            if anchor in times:
                                row[f"x {anchor}"] = times[anchor] / ms
                    rows.append(row)
            del q, k, v, q4, k4, v4, dout, dout4
            torch.cuda.empty_cache()
    # after the timings, so that autotuning meets the benchmark shapes first
    rows += [_correctness(device, d, hq, hkv) for d, hq, hkv in SHAPES]
    rows.append({"case": "versions", "note": f"triton {triton.__version__}, flash-attn "
                 f"{'absent' if fa is None else 'present'}"})
    return rows
