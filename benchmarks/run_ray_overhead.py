"""The Ray executor's overhead over the local executor, on the same stages and input.

    .venv/bin/python benchmarks/run_ray_overhead.py [--reps 5] [--docs 200] [--part-docs 50]

Input: the quick preset's corpus settings (``builtin:python-docs``, the first ``--docs``
documents, ``--part-docs`` per part), ingested once. Then, ``--reps`` times and
alternating, the score and dedup stages run from that ingested state with the local
executor and with Ray (local Ray with 2 CPUs, started once beforehand: its start-up is
reported on its own line, not in the ratio). Prints medians and the ratio Ray/local, and
checks that both left byte-identical part files. Not a pytest benchmark: Ray's start-up
and worker processes make it too heavy for the CI gate (docs/scale.md, "Measurements").
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--part-docs", type=int, default=50)
    ap.add_argument("--preset", default=None,
                    help="instead: `fastsynth run --preset NAME` with each executor, alternating "
                         "(local, ray, local, ray, ...; --reps pairs), Ray's start-up included")
    ap.add_argument("--stages", default=None,
                    help="with --preset: only these stages (comma-separated, e.g. ingest,score,dedup)")
    args = ap.parse_args()
    if args.preset:
        return whole_run(args.preset, args.reps, args.stages.split(",") if args.stages else None)

    from fastsynth.run.executor import LocalExecutor, run_stage
    from fastsynth.run.ray_executor import RayExecutor
    from fastsynth.run.rundir import RunDir
    from fastsynth.run.stages import dedup, ingest, score

    work = Path(tempfile.mkdtemp(prefix="fsrb-", dir="/tmp"))
    configs = [(ingest.STAGE, ingest.IngestConfig(limit=args.docs, part_docs=args.part_docs)),
               (score.STAGE, score.ScoreConfig()), (dedup.STAGE, dedup.DedupConfig())]
    manifest_config = {s.name: str(c) for s, c in configs}
    seed = work / "seed"
    run_stage(RunDir(seed, manifest_config), *configs[0])

    t0 = time.perf_counter()
    ray_ex = RayExecutor(num_cpus=2, show_progress=False)
    ray_ex.start(work / "ray-home")
    start_s = time.perf_counter() - t0

    def one(name: str, executor, k: int) -> float:
        root = work / f"{name}{k}"
        shutil.copytree(seed, root)
        rd = RunDir(root, manifest_config)
        t = time.perf_counter()
        for stage, config in configs[1:]:
            run_stage(rd, stage, config, executor)
        return time.perf_counter() - t

    times: dict[str, list[float]] = {"local": [], "ray": []}
    for k in range(args.reps):
        times["local"].append(one("local", LocalExecutor(show_progress=False), k))
        times["ray"].append(one("ray", ray_ex, k))
    ray_ex.shutdown()

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}

    same = files(work / "local0") == files(work / "ray0")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"score+dedup over {args.docs} documents in parts of {args.part_docs}, {args.reps} reps")
    for k, v in times.items():
        print(f"  {k:<5} median {med[k]:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in v)})")
    print(f"  ray / local = {med['ray'] / med['local']:.2f}  (overhead {100 * (med['ray'] / med['local'] - 1):+.0f}%)")
    print(f"  local Ray start-up (not in the ratio): {start_s:.1f} s")
    print(f"  outputs byte-identical: {same}")
    shutil.rmtree(work, ignore_errors=True)


def whole_run(preset: str, reps: int = 1, stages: list[str] | None = None) -> None:
    import os

    from fastsynth.run.executor import LocalExecutor
    from fastsynth.run.pipeline import load_config, run
    from fastsynth.run.ray_executor import RayExecutor

    work = Path(tempfile.mkdtemp(prefix="fsrp-", dir="/tmp"))
    plan = load_config(preset=preset, overrides={"run": {"stages": tuple(stages)}} if stages else None)
    times: dict[str, list[float]] = {"local": [], "ray": []}
    loads = [os.getloadavg()[0]]
    for k in range(reps):
        for name, make in (("local", lambda: LocalExecutor(show_progress=False)),
                           ("ray", lambda: RayExecutor(num_cpus=2, show_progress=False))):
            t = time.perf_counter()
            ex = make()
            try:
                rd = run(plan, work / f"{name}{k}", executor=ex, report=False)
            finally:
                if name == "ray":
                    ex.shutdown()
            times[name].append(time.perf_counter() - t)
            loads.append(os.getloadavg()[0])
            per_stage = {s: rd.manifest["stages"][s].get("seconds") for s in plan.run.stages}
            print(f"{name}#{k}: {times[name][-1]:.1f} s; stage seconds {per_stage}; load {loads[-1]:.1f}",
                  flush=True)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))
                if p.relative_to(root).parts[0] not in ("ray", "logs")}

    a, b = files(work / "local0"), files(work / "ray0")
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"--preset {preset} stages {','.join(plan.run.stages)}, {reps} alternating pair(s): "
          f"local median {med['local']:.1f} s {times['local']}, ray median {med['ray']:.1f} s {times['ray']} "
          f"(start-up included), ray / local = {med['ray'] / med['local']:.2f}; "
          f"1-min load average {min(loads):.1f}-{max(loads):.1f}")
    print(f"  part files: {len(a)}; differing: {differ or 'none'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
