"""Time every attention tile candidate on this GPU and write the best as a tiles file.

``python benchmarks/gpu/_tile_sweep.py --out sweep.json --tiles tiles.json [--workers N]``

For each kernel of ``kernels/attention.py`` (forward, dK/dV, dQ) and head dim (128 with 24/8
heads, 64 with 32/8: the shapes of ``benchmarks/gpu/attention.py``), causal bf16 at 8192 tokens
x 2 sequences, it times each candidate tile of ``CANDIDATES`` (Triton's do_bench median): the
forward alone, then the whole backward (the delta row sums + dK/dV + dQ) with the forward's best
tile, one backward kernel varied at a time. ``--tiles`` gets the two fastest tiles per kernel and
head dim, in the format ``FASTSYNTH_ATTENTION_TILES`` reads (docs/attention.md, "Tiles for another
GPU"); ``--out`` every timing, failures included (a tile that needs more shared memory than the
card has fails at launch).

Compiling is what costs time (5-30 s per kernel and tile, one CPU core each), so the candidates
are compiled first in ``--workers`` processes in parallel, each launching its tiles once on a
small input with the same specialisation (Triton caches the binaries on disk), and timed after in
this process. Not a suite check (the leading underscore keeps run.py from discovering it).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELS = {"fwd": "_fwd_kernel", "dq": "_bwd_dq_kernel", "dkdv": "_bwd_dkdv_kernel"}
SHAPES = {128: (24, 8), 64: (32, 8)}            # head dim -> (query heads, KV heads)
N, BATCH = 8192, 2
# (BLOCK_M, BLOCK_N, num_warps, num_stages); the first two of each list are the built-in ones.
CANDIDATES = {
    ("fwd", 128): [(128, 64, 8, 3), (128, 128, 8, 2), (128, 128, 8, 3), (128, 64, 8, 4),
                   (128, 64, 4, 3), (64, 64, 4, 3), (64, 128, 4, 3), (128, 32, 4, 3)],
    ("dq", 128): [(128, 64, 8, 2), (64, 32, 4, 2), (64, 64, 4, 2), (128, 32, 8, 2),
                  (128, 32, 4, 3), (64, 64, 8, 3), (128, 64, 8, 3), (128, 128, 8, 2)],
    ("dkdv", 128): [(32, 64, 8, 3), (64, 64, 8, 2), (32, 128, 8, 2), (32, 128, 8, 3),
                    (64, 128, 8, 2), (16, 64, 4, 3), (32, 64, 4, 3), (16, 128, 8, 3)],
    ("fwd", 64): [(128, 64, 8, 3), (128, 128, 8, 2), (128, 128, 8, 3), (128, 64, 4, 3),
                  (128, 128, 4, 3)],
    ("dq", 64): [(128, 64, 8, 2), (64, 64, 4, 3), (128, 32, 4, 3), (64, 32, 4, 3),
                 (128, 64, 4, 3)],
    ("dkdv", 64): [(64, 128, 8, 2), (32, 64, 4, 2), (32, 128, 4, 3), (64, 64, 4, 3),
                   (32, 128, 8, 3)],
}


def _attention():
    sys.path.insert(0, str(HERE))
    import run as suite
    suite.use_source_tree()
    from fastsynth.kernels import attention
    return attention


def _pin(att, tiles: dict) -> None:
    """Make each named kernel's autotuner run exactly the given tile (no timing, no cache)."""
    import triton
    for kernel, (m, n, w, s) in tiles.items():
        tuner = getattr(att, KERNELS[kernel])
        tuner.configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)]
        tuner.cache.clear()


def _inputs(hd: int, n: int, batch: int, device: str, seed: int = 0):
    import torch
    hq, hkv = SHAPES[hd]
    g = torch.Generator(device="cpu").manual_seed(seed)
    q, k, v, do = (torch.randn(batch * n, h, hd, generator=g).to(device, torch.bfloat16)
                   for h in (hq, hkv, hkv, hq))
    cu = torch.arange(0, batch + 1, dtype=torch.int32, device=device) * n
    return q, k, v, do, cu


def _compile(task: tuple) -> dict:
    """Worker: launch the forward and backward once with the task's tiles (compiles them)."""
    hd, tiles, device = task
    import torch
    att = _attention()
    _pin(att, tiles)
    q, k, v, do, cu = _inputs(hd, 256, 1, device)
    t0, errors = time.monotonic(), {}
    try:
        with torch.no_grad():
            out, lse = att._forward(q, k, v, cu, cu, 256, 256, True, hd ** -0.5)
    except Exception as exc:  # a tile that does not fit: reported, the others go on
        errors["fwd"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        out, lse = torch.zeros_like(q), torch.zeros(q.shape[1], q.shape[0], device=device)
    try:
        att._backward(do, q, k, v, out, lse, cu, cu, 256, 256, True, hd ** -0.5)
    except Exception as exc:
        errors["bwd"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    if device != "cpu":
        torch.cuda.synchronize()
    return {"hd": hd, "tiles": {k: list(t) for k, t in tiles.items()}, "errors": errors,
            "compile_s": round(time.monotonic() - t0, 1)}


def precompile(workers: int, device: str = "cuda", head_dims=tuple(SHAPES), log=print) -> list[dict]:
    """Compile every candidate in parallel: task i launches the i-th tile of each kernel."""
    tasks = []
    for hd in head_dims:
        lists = [CANDIDATES[(k, hd)] for k in KERNELS]
        for i in range(max(map(len, lists))):
            tasks.append((hd, {k: lst[i] for k, lst in zip(KERNELS, lists) if i < len(lst)}, device))
    ctx = multiprocessing.get_context("spawn")
    results = []
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        for res in pool.map(_compile, tasks):
            log(f"  compiled hd{res['hd']} {res['tiles']} in {res['compile_s']} s"
                + (f" errors {res['errors']}" if res["errors"] else ""), flush=True)
            results.append(res)
    return results


def _time(fn, device: str, grads=None) -> float:
    """Median milliseconds: Triton's do_bench on the GPU; three wall-clock runs on the CPU
    (the interpreter smoke test, where only that the sweep runs matters)."""
    if device == "cpu":
        import statistics
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times)
    import triton.testing
    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")


def sweep(n: int = N, batch: int = BATCH, device: str = "cuda", head_dims=tuple(SHAPES),
          log=print) -> list[dict]:
    import torch
    att = _attention()
    rows = []
    for hd in head_dims:
        hq, _ = SHAPES[hd]
        q, k, v, do, cu = _inputs(hd, n, batch, device, seed=hd)
        scale = hd ** -0.5
        fwd_flops = 4.0 * batch * hq * n * n * hd * 0.5
        best = {kernel: CANDIDATES[(kernel, hd)][0] for kernel in KERNELS}

        def measure(kernel, tile, fn, flops):
            _pin(att, {**best, kernel: tile})
            row = {"kernel": kernel, "hd": hd, "tile": list(tile)}
            try:
                fn()                                   # load (or compile) outside the timing
                ms = _time(fn, device)
                row.update(ms=round(ms, 4), tflops=round(flops / (ms * 1e-3) / 1e12, 1))
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            log(f"  {row}", flush=True)
            rows.append(row)
            return row.get("ms", math.inf)

        def forward():
            with torch.no_grad():
                return att._forward(q, k, v, cu, cu, n, n, True, scale)

        times = {t: measure("fwd", t, forward, fwd_flops) for t in CANDIDATES[("fwd", hd)]}
        best["fwd"] = min(times, key=times.get)
        _pin(att, best)
        out, lse = forward()

        def backward():
            return att._backward(do, q, k, v, out, lse, cu, cu, n, n, True, scale)

        for kernel in ("dkdv", "dq"):   # one kernel varied, the other at its best so far
            times = {t: measure(kernel, t, backward, 2.5 * fwd_flops) for t in CANDIDATES[(kernel, hd)]}
            best[kernel] = min(times, key=times.get)
        # the whole forward + backward through autograd with the best tiles, as the suite times it
        _pin(att, best)
        xs = [t.detach().requires_grad_() for t in (q, k, v)]

        def both():
            att.flash_attn_varlen(*xs, cu, cu, n, n, causal=True).backward(do)

        both()
        ms = _time(both, device, grads=xs)
        rows.append({"kernel": "fwd+bwd", "hd": hd, "tile": {k: list(t) for k, t in best.items()},
                     "ms": round(ms, 4), "tflops": round(3.5 * fwd_flops / (ms * 1e-3) / 1e12, 1)})
        log(f"  {rows[-1]}", flush=True)
        del q, k, v, do, out, lse, xs
        if device != "cpu":
            torch.cuda.empty_cache()
    return rows


def best_tiles(rows: list[dict], keep: int = 2) -> dict:
    """The ``keep`` fastest tiles per kernel and head dim, in the tiles-file format."""
    tiles: dict = {}
    for kernel in KERNELS:
        for hd in SHAPES:
            timed = sorted((r["ms"], r["tile"]) for r in rows
                           if r["kernel"] == kernel and r["hd"] == hd and "ms" in r)
            if timed:
                tiles.setdefault(kernel, {})[str(hd)] = [t for _, t in timed[:keep]]
    return tiles


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("tile_sweep.json"))
    ap.add_argument("--tiles", type=Path, default=None, help="write the best tiles here")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--n", type=int, default=N, help="tokens per sequence (default %(default)s)")
    ap.add_argument("--batch", type=int, default=BATCH, help="sequences (default %(default)s)")
    ap.add_argument("--head-dims", default="128,64",
                    help="comma-separated, of %(default)s (default: both)")
    ap.add_argument("--device", default="cuda",
                    help="cuda, or cpu under TRITON_INTERPRET=1 for a smoke test of the script")
    args = ap.parse_args(argv)
    head_dims = tuple(int(h) for h in args.head_dims.split(","))
    if not set(head_dims) <= set(SHAPES):
        ap.error(f"--head-dims: each must be one of {sorted(SHAPES)}, got {args.head_dims}")
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        print("tile sweep skipped: no CUDA device")
        return 0
    t0 = time.monotonic()
    print(f"precompiling in {args.workers} processes ...", flush=True)
    compiled = precompile(args.workers, args.device, head_dims)
    t1 = time.monotonic()
    print(f"compiled in {t1 - t0:.0f} s; timing ...", flush=True)
    rows = sweep(args.n, args.batch, args.device, head_dims)
    tiles = best_tiles(rows)
    import triton
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (interpreter)"
    facts = {"device": name, "torch": torch.__version__,
             "triton": triton.__version__, "n": args.n, "batch": args.batch, "compile_s": round(t1 - t0, 1),
             "time_s": round(time.monotonic() - t1, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": facts, "compiled": compiled, "rows": rows,
                                    "tiles": tiles}, indent=1) + "\n")
    if args.tiles:
        args.tiles.write_text(json.dumps(tiles, indent=1) + "\n")
    print(json.dumps(facts))
    print("best tiles:", json.dumps(tiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
