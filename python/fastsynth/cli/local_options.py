"""Command-line options of the generation backends: the local backend's CPU kernels (shared by
``generate`` and ``serve``) and vLLM engine arguments (``--engine-arg KEY=VALUE``)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from fastsynth.errors import ConfigError


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


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """``--engine-arg KEY=VALUE`` (repeatable): arguments of ``vllm.LLM``."""
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="vllm backend: an argument of vllm.LLM, repeatable; VALUE is read as "
                        "JSON when it parses (0.5, 4096, true, null, [1,2]) and as a string "
                        "otherwise, e.g. --engine-arg dtype=bfloat16 --engine-arg "
                        "gpu_memory_utilization=0.5 --engine-arg max_model_len=4096")


def parse_engine_args(items: list[str]) -> dict[str, Any]:
    """``["dtype=float32", "max_model_len=4096"]`` -> ``{"dtype": "float32",
    "max_model_len": 4096}``; a malformed item is a ``ConfigError`` naming it."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--engine-arg must be KEY=VALUE with KEY a Python identifier, "
                              f"got {item!r}")
        if key in out:
            raise ConfigError(f"--engine-arg {key} given twice")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def engine_kwargs(args: argparse.Namespace, backend: str | None = None) -> dict[str, Any]:
    """Generator keyword arguments for ``--engine-arg`` (only the vllm backend takes them)."""
    items = getattr(args, "engine_arg", None) or []
    backend = backend or getattr(args, "backend", None)
    if items and backend != "vllm":
        raise ConfigError(f"--engine-arg is only for --backend vllm (got --backend {backend})")
    return parse_engine_args(items)
