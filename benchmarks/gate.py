"""Benchmark gate: fail when a declared ratio floor is missed.

Usage: python benchmarks/gate.py BENCH.json [floors.toml]

Ratios, not absolute times: CI machines are shared and noisy, but anchor and candidate
run in the same process minutes apart, so their ratio is stable. Where minutes apart is too
far (the training loop: ~0.6 s runs, ratio ~1.05), a floor's ``anchor_from`` names an
extra-info key of the candidate's benchmark holding the anchor's median over runs made
between the candidate's rounds.
"""
from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    results = json.loads(Path(argv[0]).read_text())
    floors = tomllib.loads(Path(argv[1] if len(argv) > 1 else Path(__file__).with_name("floors.toml")).read_text())
    medians = {b["name"]: b["stats"]["median"] for b in results["benchmarks"]}
    extra = {b["name"]: b.get("extra_info", {}) for b in results["benchmarks"]}
    failed = 0
    print(f"{'gate':28} {'anchor median':>14} {'candidate median':>17} {'ratio':>7} {'floor':>6}  result")
    for name, spec in floors.items():
        a, c = medians.get(spec["anchor"]), medians.get(spec["candidate"])
        if "anchor_from" in spec and c is not None:
            # the candidate's benchmark timed the anchor between its own rounds (alternating,
            # so both saw the same host): that median, from the candidate's extra info
            a = extra[spec["candidate"]].get(spec["anchor_from"])
        if a is None or c is None:
            missing = spec["anchor"] if a is None else spec["candidate"]
            ok = bool(spec.get("optional", False))
            print(f"{name:28} {'-':>14} {'-':>17} {'-':>7} {spec['min_ratio']:>6}  "
                  f"{'SKIPPED (optional)' if ok else 'FAIL'}: {missing} did not run")
            failed += not ok
            continue
        ratio = a / c
        ok = ratio >= spec["min_ratio"]
        failed += not ok
        print(f"{name:28} {a:>13.4f}s {c:>16.4f}s {ratio:>6.2f}x {spec['min_ratio']:>5}x  {'ok' if ok else 'FAIL'}")
    print(f"benchmark gate: {len(floors) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
