"""Command-line options of the local backend's CPU kernels, shared by ``generate`` and ``serve``."""
from __future__ import annotations

import argparse


def add_kernel_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """``--packed-matmul`` and ``--no-quant-matvec`` (``prefix`` starts their help text)."""
    p.add_argument("--packed-matmul", action="store_true",
                   help=prefix + "hold float32 projections in oneDNN's prepacked layout "
                                 "(faster batched decoding for checkpoints without GGUF blocks)")
    p.add_argument("--no-quant-matvec", action="store_true",
                   help=prefix + "GGUF on CPU: decode with the float32 weights instead of "
                                 "reading the file's quantised blocks")


def kernel_kwargs(args: argparse.Namespace) -> dict[str, bool]:
    """LocalGenerator keyword arguments for the options above."""
    return {"packed": args.packed_matmul, "quantized": not args.no_quant_matvec}
