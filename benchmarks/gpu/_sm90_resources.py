"""Registers, spills and shared memory of the attention kernels compiled for sm_90, without a GPU.

``python benchmarks/gpu/_sm90_resources.py [--json OUT]``: compiles ``_fwd_kernel``,
``_bwd_dq_kernel`` and ``_bwd_dkdv_kernel`` of ``kernels/attention.py`` for an H100
(``GPUTarget("cuda", 90, 32)``) with the ptxas of the installed triton wheel, for every
autotuning candidate of ``_GPU_SHAPES`` (hd 64 and 128, bf16, causal, GQA 3) and prints one
line per (kernel, head dim, tile): registers per thread, spill stores / loads (bytes per thread,
from ptxas) and the static + dynamic shared memory (bytes). Arguments are specialised as a real
launch of contiguous tensors specialises them: pointers and strides divisible by 16.

Used to check that a change to the kernels' code does not change their resources (a Triton
``@triton.jit`` helper is inlined, so a refactor should compile to the same numbers). Runs on
the CPU in ~1-3 minutes; not a GPU-suite check (the leading underscore keeps run.py from
discovering it).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _load_kernels(source: Path):
    import importlib.util
    os.environ.pop("TRITON_INTERPRET", None)        # compile, do not interpret
    spec = importlib.util.spec_from_file_location("attention_under_test", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _signature(kernel, dtype: str) -> tuple[dict, dict]:
    """(signature, attrs) of a launch with contiguous ``dtype`` tensors."""
    sig, attrs = {}, {}
    f32 = {"LSE", "DELTA"}
    i32 = {"cu_q", "cu_k"}
    for i, name in enumerate(kernel.arg_names):
        if i in kernel.constexprs:
            sig[name] = "constexpr"
        elif name[0].isupper() or name in i32:      # tensor arguments
            sig[name] = "*fp32" if name in f32 else "*i32" if name in i32 else f"*{dtype}"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in ("qk_scale", "sm_scale"):
            sig[name] = "fp32"
        else:                                        # strides and the bucket
            sig[name] = "i32"
            if name != "stride_lh":                  # total_q: any value
                attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, attrs


def _ptxas(ptx: str, ptxas: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        out = subprocess.run([ptxas, "-arch=sm_90a", "-v", str(src), "-o", str(Path(d) / "k.o")],
                             capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    stack = re.search(r"(\d+) bytes stack frame", text)
    return {"regs": int(regs.group(1)), "spill_st": int(spill.group(1)),
            "spill_ld": int(spill.group(2)), "stack": int(stack.group(1))}


def measure(source: Path = REPO / "kernels" / "attention.py", head_dims=(64, 128),
            causal: bool = True, group: int = 3) -> list[dict]:
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource

    att = _load_kernels(source)
    ptxas = get_ptxas(90).path
    target = GPUTarget("cuda", 90, 32)
    kernels = {"fwd": att._fwd_kernel, "dq": att._bwd_dq_kernel, "dkdv": att._bwd_dkdv_kernel}
    rows = []
    for name, tuned in kernels.items():
        fn = tuned.fn                                  # the JITFunction under the autotuner
        sig, attrs = _signature(fn, "bf16")
        for hd in head_dims:
            for m, n, warps, stages in att._GPU_SHAPES[(name, 64 if hd <= 64 else 128)]:
                consts = {"HEAD_DIM": hd, "CAUSAL": causal, "GROUP": group,
                          "DOT_T": tl.bfloat16, "PREC": "tf32", "BLOCK_M": m, "BLOCK_N": n}
                src = ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)
                k = triton.compile(src, target=target,
                                   options={"num_warps": warps, "num_stages": stages})
                row = {"kernel": name, "head_dim": hd, "tile": f"{m}x{n}", "warps": warps,
                       "stages": stages, **_ptxas(k.asm["ptx"], ptxas),
                       "shared": int(k.metadata.shared)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--source", type=Path, default=REPO / "kernels" / "attention.py",
                    help="the kernel file (e.g. an older version, to compare)")
    args = ap.parse_args()
    rows = measure(args.source)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
