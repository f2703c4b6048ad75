"""Every GPU check of the project in one command: ``python benchmarks/gpu/run.py [--out PATH]``.

Discovers the modules beside this file (``benchmarks/gpu/<name>.py``, not starting with ``_``);
each exposes ``run(device) -> list[dict]`` (rows of the table; a ``deadline`` keyword, a
``time.monotonic()`` value, is passed when the function accepts one) — the contract in
docs/attention.md, "The GPU check suite". Runs them in name order on ``cuda:0``, prints one
Markdown table (paste it into benchmarks/RESULTS.md with the card, versions and date printed
above it) and writes every row plus the machine facts as JSON.

Sized for one run on one H100 in under 4 minutes (``--budget-s``: a check that would start
after the budget is skipped and listed). Without CUDA it prints why and exits 0 (a GPU CI job
on a CPU runner passes). Exit status 1 when a check raised or reported ``ok: False``.

Works from a source checkout without installing fastsynth (a bare GPU machine with torch and
triton): ``python/`` goes on ``sys.path`` and ``kernels/`` is served as ``fastsynth.kernels``.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import inspect
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FLOP_CONVENTION = ("attention FLOPs = 4*B*H*N^2*D (H = query heads, N tokens per sequence), "
                   "x0.5 when causal, x2.5 for the backward (fwd+bwd = 3.5x forward)")


def use_source_tree() -> None:
    """Make ``fastsynth`` and ``fastsynth.kernels`` importable from this checkout when the
    package is not installed."""
    src = str(REPO / "python")
    if importlib.util.find_spec("fastsynth") is None and src not in sys.path:
        sys.path.insert(0, src)
    import fastsynth
    if importlib.util.find_spec("fastsynth.kernels") is None:
        # the wheel maps kernels/ to fastsynth/kernels (pyproject.toml); do the same here
        fastsynth.__path__.append(str(REPO))


def discover(directory: Path = HERE) -> list[tuple[str, Path]]:
    """(name, path) of every check module in ``directory``, sorted by name."""
    return sorted((p.stem, p) for p in directory.glob("*.py")
                  if not p.stem.startswith("_") and p.stem != "run")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"fastsynth_gpu_check_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_checks(checks: list[tuple[str, Path]], device: Any, budget_s: float,
               log=print) -> tuple[list[dict], list[dict]]:
    """Run each check; returns (rows, problems). A check that raises or is skipped for time
    becomes a problem entry (and a row saying so), never stops the others."""
    start = time.monotonic()
    deadline = start + budget_s
    rows, problems = [], []
    for name, path in checks:
        if time.monotonic() >= deadline:
            problems.append({"check": name, "problem": f"skipped: the {budget_s:.0f} s budget was spent"})
            rows.append({"check": name, "note": problems[-1]["problem"]})
            continue
        t0 = time.monotonic()
        log(f"[{t0 - start:6.1f} s] {name} ...", flush=True)
        try:
            fn = _load(name, path).run
            kwargs = {"deadline": deadline} if "deadline" in inspect.signature(fn).parameters else {}
            got = fn(device, **kwargs)
            if not isinstance(got, list) or not all(isinstance(r, dict) for r in got):
                raise TypeError(f"run() must return a list of dicts, got {type(got).__name__}")
            for r in got:
                rows.append({"check": name, **r})
                if r.get("ok") is False:
                    problems.append({"check": name, "problem": f"not ok: {r}"})
        except Exception as exc:  # one broken check must not cost the other measurements
            problems.append({"check": name, "problem": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc()})
            rows.append({"check": name, "ok": False, "note": f"raised {type(exc).__name__}: {exc}"})
        log(f"[{time.monotonic() - start:6.1f} s] {name} done in {time.monotonic() - t0:.1f} s",
            flush=True)
    return rows, problems


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "/")


def render_table(rows: list[dict]) -> str:
    """One Markdown table; columns are the union of the rows' keys in first-seen order."""
    if not rows:
        return "(no rows)"
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def machine_facts(torch) -> dict:
    """Card, versions and date for the results file."""
    facts = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
             "python": platform.python_version(), "torch": torch.__version__,
             "cuda": torch.version.cuda, "flop_convention": FLOP_CONVENTION}
    try:
        import triton
        facts["triton"] = triton.__version__
    except ImportError:
        facts["triton"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        facts.update(device=p.name, device_memory_gib=round(p.total_memory / 2**30, 1),
                     sm_count=p.multi_processor_count)
    return facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_results.json"),
                    help="JSON file for the rows and machine facts (default: %(default)s)")
    ap.add_argument("--only", default="",
                    help="comma-separated check names to run (default: all); see --list")
    ap.add_argument("--list", action="store_true", help="list the checks and exit")
    ap.add_argument("--budget-s", type=float, default=220.0,
                    help="no check starts after this many seconds (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.budget_s <= 0:
        ap.error(f"--budget-s must be positive, got {args.budget_s}")

    checks = discover()
    if args.list:
        print("\n".join(name for name, _ in checks))
        return 0
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - {n for n, _ in checks})
        if unknown:
            ap.error(f"--only: unknown check(s) {unknown}; available: {[n for n, _ in checks]}")
        checks = [c for c in checks if c[0] in wanted]

    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        reason = "torch is not installed" if torch is None else "no CUDA device"
        print(f"GPU checks skipped: {reason}.")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"skipped": reason, "checks": [n for n, _ in checks]},
                                       indent=1) + "\n")
        return 0

    use_source_tree()
    facts = machine_facts(torch)
    print(" · ".join(f"{k} {v}" for k, v in facts.items() if k != "flop_convention"), flush=True)
    t0 = time.monotonic()
    rows, problems = run_checks(checks, torch.device("cuda", 0), args.budget_s)
    facts["wall_s"] = round(time.monotonic() - t0, 1)

    print()
    print(render_table(rows))
    print()
    print(f"FLOPs: {FLOP_CONVENTION}.")
    print(f"{len(rows)} rows in {facts['wall_s']} s; JSON: {args.out}")
    for p in problems:
        print(f"PROBLEM {p['check']}: {p['problem']}", file=sys.stderr)
        if "traceback" in p:
            print(p["traceback"], file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": facts, "rows": rows, "problems": problems},
                                   indent=1, default=str) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
