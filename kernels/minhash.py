"""MinHash permutation step on the GPU: signatures from pre-hashed shingles in CSR layout.

Inputs (what ``fastsynth._native.shingle_prehashes`` returns, plus the permutations):
``values`` (total_shingles,) 32-bit pre-hashes, ``offsets`` (n_docs + 1,) int64 with
document i owning ``values[offsets[i]:offsets[i+1]]``, ``a``/``b`` (num_perm,) uint32.
Output: ``(n_docs, num_perm)`` signatures, ``min_k (a * x + b) mod 2**32`` over the
document's shingles, 0xFFFFFFFF for a document without shingles — bit-identical to the
CPU path (``_native.minhash_from_prehash``).

uint32 data travels as int32 tensors (torch has few uint32 kernels) and is reinterpreted
inside the kernel, so the multiply-add wraps modulo 2**32 and the minimum is unsigned.
One program computes BLOCK_P permutations of one document, streaming its shingles
BLOCK_S at a time. Set TRITON_INTERPRET=1 before importing this module to run it on the CPU.
"""
from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl


@triton.jit
def _minhash_csr_kernel(x_ptr, off_ptr, a_ptr, b_ptr, out_ptr, num_perm,
                        BLOCK_S: tl.constexpr, BLOCK_P: tl.constexpr):
    doc = tl.program_id(0)
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < num_perm
    a = tl.load(a_ptr + p, mask=pmask, other=1).to(tl.uint32, bitcast=True)
    b = tl.load(b_ptr + p, mask=pmask, other=0).to(tl.uint32, bitcast=True)
    start = tl.load(off_ptr + doc)
    end = tl.load(off_ptr + doc + 1)
    full = tl.full([BLOCK_S, BLOCK_P], 0xFFFFFFFF, tl.uint32)
    acc = tl.full([BLOCK_P], 0xFFFFFFFF, tl.uint32)
    for s in range(start, end, BLOCK_S):
        idx = s + tl.arange(0, BLOCK_S)
        smask = idx < end
        x = tl.load(x_ptr + idx, mask=smask, other=0).to(tl.uint32, bitcast=True)
        v = x[:, None] * a[None, :] + b[None, :]
        v = tl.where(smask[:, None], v, full)
        acc = tl.minimum(acc, tl.min(v, axis=0))
    tl.store(out_ptr + doc * num_perm + p, acc.to(tl.int32, bitcast=True), mask=pmask)


def minhash_csr(values: torch.Tensor, offsets: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                block_s: int = 32, block_p: int = 64) -> torch.Tensor:
    """Signatures as an int32 tensor ``(n_docs, num_perm)`` holding the uint32 bit patterns.

    values/a/b: int32 tensors with the uint32 bit patterns; offsets: int64. All on one device.
    """
    n = offsets.numel() - 1
    num_perm = a.numel()
    out = torch.empty((n, num_perm), dtype=torch.int32, device=values.device)
    if n == 0:
        return out
    if values.numel() == 0:  # every document empty; keep pointers valid
        values = torch.zeros(1, dtype=torch.int32, device=values.device)
    grid = (n, triton.cdiv(num_perm, block_p))
    _minhash_csr_kernel[grid](values, offsets, a, b, out, num_perm, BLOCK_S=block_s, BLOCK_P=block_p)
    return out


def minhash_csr_numpy(values: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray,
                      device: str = "cuda") -> np.ndarray:
    """numpy in, numpy out (uint32 ``(n_docs, num_perm)``); runs on ``device``."""
    # np.array copies: the permutation arrays are read-only, which torch.from_numpy warns about.
    as_i32 = lambda arr: torch.from_numpy(np.array(arr, dtype=np.uint32).view(np.int32)).to(device)
    out = minhash_csr(as_i32(values), torch.from_numpy(np.ascontiguousarray(offsets, dtype=np.int64)).to(device),
                      as_i32(a), as_i32(b))
    return out.cpu().numpy().view(np.uint32)
