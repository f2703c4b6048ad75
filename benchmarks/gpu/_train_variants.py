"""Where the training step's time goes on this GPU: MFU of the llama-3.2-1b step at sequence
length 4096 for several micro-batch sizes, eager and with ``compile``, then a CUDA-kernel
profile of the suite's configuration (the kernels that take the most device time).

``python benchmarks/gpu/_train_variants.py --out variants.json --profile profile.txt``

Each variant is ``train_step.measure`` (the suite's MFU check) with other settings; variants
that would start after ``--budget-s`` are skipped and listed. Not a suite check (the leading
underscore keeps run.py from discovering it).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (preset, rows, activation checkpointing, compile, attention backend), most informative first
VARIANTS = [("llama-3.2-1b", 4, False, True, "sdpa"), ("llama-3.2-1b", 2, False, False, "sdpa"),
            ("llama-3.2-1b", 8, False, True, "auto"), ("llama-3.2-1b", 8, False, True, "sdpa")]


def profile(device, rows: int, steps: int = 5, top: int = 30) -> str:
    """The ``top`` CUDA kernels by total device time over ``steps`` eager steps."""
    import torch
    from torch.profiler import ProfilerActivity
    import train_step
    with torch.profiler.profile(activities=[ProfilerActivity.CUDA]) as prof:
        row = train_step.measure(device, "llama-3.2-1b", rows=rows, steps=steps)
    events = prof.key_averages()
    for key in ("self_device_time_total", "self_cuda_time_total"):
        try:
            table = events.table(sort_by=key, row_limit=top, max_name_column_width=90)
            break
        except (AttributeError, KeyError, ValueError):
            continue
    return f"{row}\n{table}\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("train_variants.json"))
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--profile-rows", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=300.0)
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return 0
    sys.path.insert(0, str(HERE))
    import run as suite
    suite.use_source_tree()
    import train_step
    device = torch.device("cuda", 0)
    t0 = time.monotonic()
    rows = []
    for preset, n, ckpt, comp, backend in VARIANTS:
        if time.monotonic() - t0 > args.budget_s:
            rows.append({"case": f"{preset} rows {n} ckpt {ckpt} compile {comp} {backend}",
                         "note": "skipped: budget"})
            continue
        rows.append(train_step.measure(device, preset, rows=n, checkpointing=ckpt, compile=comp,
                                       attention=backend))
        print(rows[-1], flush=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    if args.profile and time.monotonic() - t0 < args.budget_s:
        text = profile(device, args.profile_rows)
        args.profile.write_text(text)
        print(text, flush=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
