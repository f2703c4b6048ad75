"""``fastsynth run [CONFIG.toml] [--preset quick|default] -o RUN_DIR``: the whole strategy.

score -> filter -> dedup -> synthesize -> QA -> dedup the generated pairs -> mix ->
tokenize -> train (a small sweep, each run evaluated on held-out documents, the law fitted
to them) -> plan (with the fitted constants) -> report, in one resumable run directory
(re-run the same command to continue after the last finished part).
"""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from fastsynth.run.config import add_arguments
    from fastsynth.run.executor_options import add_executor_arguments
    from fastsynth.run.pipeline import PRESETS, STAGES

    p = sub.add_parser("run", help="run the whole pipeline into a resumable run directory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default=None,
                   help="run config (TOML: [run] and one table per stage)")
    p.add_argument("-o", "--out", required=True, help="run directory")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="start from a preset")
    p.add_argument("--source", default=None, help="corpus to build from (overrides [run] source)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in RUN_DIR")
    p.add_argument("--no-report", action="store_true", help="do not write report.md/report.html")
    add_executor_arguments(p)
    for stage in STAGES:
        g = p.add_argument_group(f"stage {stage.name}", stage.description)
        add_arguments(g, stage.config, prefix=f"{stage.name}.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from fastsynth.run.executor_options import executor_from_args
    from fastsynth.run.pipeline import STAGES, load_config
    from fastsynth.run.pipeline import run as run_pipeline

    overrides: dict[str, dict] = {}
    for stage in STAGES:
        for f in dataclasses.fields(stage.config):
            key = f"{stage.name}.{f.name}"
            if hasattr(args, key):
                overrides.setdefault(stage.name, {})[f.name] = getattr(args, key)
    if args.source:
        overrides.setdefault("run", {})["source"] = args.source
    plan = load_config(args.config, preset=args.preset, overrides=overrides)
    rd = run_pipeline(plan, args.out, overwrite=args.overwrite, report=not args.no_report,
                      executor=executor_from_args(args))
    w = sys.stdout.write
    for name in plan.run.stages:
        st = rd.manifest["stages"][name]
        c = st.get("counts") or {}
        counts = (f"in {c['in']:,} out {c['out']:,} rejected {c['rejected']:,} {st.get('unit', '')}"
                  if c else st.get("reason", ""))
        w(f"{name:<10} {st['state']:<8} {counts}\n")
    if not args.no_report:
        w(f"report: {rd.root / 'report.html'}\n")
    w(f"manifest: {rd.root / 'manifest.json'}\n")
    return 0

