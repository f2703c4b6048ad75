"""Fuzz target: the GGML-block matmul kernel (``fastsynth._native.quant_matmul``).

Input: block format (Q4_1, Q8_0), output rows (1-40), input width (1-6 blocks of 32),
batch (1-20: both the per-use and the 4x3-tile paths), SIMD or scalar, thread count,
then the block bytes and activations. Scales are fuzzed fp16 bit patterns with a small
exponent (finite products); one input in eight passes malformed arguments instead
(wrong byte count, width not a multiple of 32, an ``out`` that overlaps ``x``).

Failure (a :class:`Finding`, or any exception escaping ``check``):

* a product outside float32 accumulation error of the float64 product of the weights the
  ``gguf`` package dequantises (bound ``(in + 2) * eps32 * sum |w x|`` per entry);
* SIMD and scalar results or thread counts that differ by more than that bound;
* malformed arguments not refused with ``ValueError``; a crash or sanitizer report.
"""
from __future__ import annotations

import numpy as np

from bytesource import ByteSource
from harness import Finding, instrumented, main

with instrumented():
    from fastsynth import _native

import gguf

KNOWN: dict[str, str] = {}
_QTYPE = {"q4_1": gguf.GGMLQuantizationType.Q4_1, "q8_0": gguf.GGMLQuantizationType.Q8_0}
_BLOCK_BYTES = {"q4_1": 20, "q8_0": 34}
_EPS = float(np.finfo(np.float32).eps)


def _blocks(src: ByteSource, fmt: str, out: int, nblk: int) -> np.ndarray:
    size = out * nblk * _BLOCK_BYTES[fmt]
    raw = np.frombuffer(src.bytes(size).ljust(size, b"\x5a"), dtype=np.uint8).copy()
    raw = raw.reshape(out, nblk, _BLOCK_BYTES[fmt])
    n_scales = 2 if fmt == "q4_1" else 1
    bits = raw[..., :2 * n_scales].copy().view(np.uint16)
    bits &= np.uint16(0xBFFF)  # exponent <= 15: finite scales, products in float32 range
    raw[..., :2 * n_scales] = bits.view(np.uint8).reshape(out, nblk, 2 * n_scales)
    return raw.reshape(out, -1)


def _malformed(src: ByteSource, fmt: str, out: int, inp: int) -> None:
    what = src.int(0, 2)
    blocks = np.zeros((out, inp // 32 * _BLOCK_BYTES[fmt]), dtype=np.uint8)
    x = np.zeros((2, inp), dtype=np.float32)
    out_arr = None
    if what == 0:
        blocks = blocks.reshape(-1)[:max(0, blocks.size - src.int(1, 40))].copy()
    elif what == 1:
        x = np.zeros((2, inp + src.int(1, 31)), dtype=np.float32)
    else:
        buf = np.zeros(2 * inp + 2 * out, dtype=np.float32)
        x = buf[:2 * inp].reshape(2, inp)
        out_arr = buf[src.int(0, 2 * inp - 1):][:2 * out].reshape(2, out)
    try:
        _native.quant_matmul(blocks, fmt, out, x, out_arr, 1, True)
    except ValueError:
        return
    raise Finding("malformed_accepted", f"case {what}: {fmt} out={out} in={inp}")


def check(data: bytes) -> None:
    src = ByteSource(data)
    fmt = src.choice(["q4_1", "q8_0"])
    out, nblk, batch = src.int(1, 40), src.int(1, 6), src.int(1, 20)
    inp = 32 * nblk
    if src.int(0, 7) == 0:
        _malformed(src, fmt, out, inp)
        return
    simd, threads = src.bool(), src.int(1, 3)
    blocks = _blocks(src, fmt, out, nblk)
    xs = np.frombuffer(src.bytes(4 * batch * inp).ljust(4 * batch * inp, b"\0"), dtype=np.uint8)
    # activations: small signed values made from the bytes (finite: no NaN bit patterns)
    x = ((xs.reshape(batch, inp, 4).astype(np.float32).mean(axis=2) - 127.5) / 32.0).astype(np.float32)
    w = gguf.quants.dequantize(blocks, _QTYPE[fmt]).astype(np.float64)
    y = _native.quant_matmul(blocks, fmt, out, x, None, threads, simd)
    ref = x.astype(np.float64) @ w.T
    bound = (inp + 2) * _EPS * (np.abs(x.astype(np.float64)) @ np.abs(w).T) + 1e-30
    if y.shape != ref.shape or y.dtype != np.float32:
        raise Finding("wrong_shape", f"{y.dtype} {y.shape}")
    err = np.abs(y - ref) - bound
    if not np.all(err <= 0):
        raise Finding("wrong_product", f"{fmt} out={out} in={inp} batch={batch} simd={simd}: "
                      f"max excess {float(np.max(err))}")
    other = _native.quant_matmul(blocks, fmt, out, x, None, 1 + threads % 3, not simd)
    if not np.all(np.abs(other - ref) <= bound):
        raise Finding("paths_differ", f"simd={not simd} result outside the bound")


if __name__ == "__main__":
    main(check, KNOWN)
