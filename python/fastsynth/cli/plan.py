"""``fastsynth plan``: size a model, cost a data strategy, fit laws, write a report.

Inputs come from ``--scenario seed-5m``, a TOML file (``--config``, layout in
:mod:`fastsynth.plan.config`) or flags; flags override the file, which overrides the
scenario. Writes ``plan.md``, ``plan.html`` and PNG figures into ``--out``.
"""
from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="plan model size, tokens and budget; fit scaling laws",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["seed-5m"], help="start from a reference scenario")
    p.add_argument("--config", metavar="TOML", help="plan inputs as a TOML file")
    p.add_argument("--budget", help="total budget in dollars (e.g. 5e6)")
    p.add_argument("--gpu-hour-usd", help="price per GPU-hour in dollars")
    p.add_argument("--peak-tflops", help="accelerator peak TFLOP/s (H100 bf16 dense: 989)")
    p.add_argument("--mfu", help="model FLOPs utilisation, in (0, 1]")
    p.add_argument("--phase", action="append", metavar="NAME:PARAMS:TOKENS[:SYNTH_SHARE]",
                   help="a training run, e.g. main:3B:4T:0.5 (repeatable; replaces the "
                        "file's phases)")
    p.add_argument("--synthetic-usd-per-mtok", help="synthetic data price per 1M tokens")
    p.add_argument("--generator-params", help="synthetic data generator size, e.g. 70B")
    p.add_argument("--generator-tokens-per-s", help="measured generator tokens/s per GPU")
    p.add_argument("--qa-share", help="budget share reserved for quality assurance")
    p.add_argument("--reserve", action="append", metavar="NAME=SHARE",
                   help="another budget share, e.g. 'model development=0.3' (repeatable)")
    p.add_argument("--inference-tokens", help="lifetime inference tokens (e.g. 1T)")
    p.add_argument("--constants", help="hoffmann | hoffmann-unrounded | epoch")
    p.add_argument("--fit-data", metavar="CSV",
                   help="runs to fit: n_params,n_tokens,loss (Chinchilla) or "
                        "n_tokens,metric (rectified)")
    p.add_argument("--bootstrap", type=int, default=200,
                   help="bootstrap refits for the intervals (default 200; 0: no intervals)")
    p.add_argument("--out", default="plan-report", help="output folder (default plan-report)")
    p.set_defaults(func=run)


def _mapping(args: argparse.Namespace) -> dict[str, Any]:
    from fastsynth.errors import ConfigError
    from fastsynth.plan.config import load_toml
    from fastsynth.plan.scenario import seed_5m_mapping

    data: dict[str, Any] = seed_5m_mapping() if args.scenario else {}
    if args.config:
        data.update(load_toml(args.config))
    hw = data.setdefault("hardware", {})
    for flag, key in (("gpu_hour_usd", "gpu_hour_usd"), ("peak_tflops", "peak_tflops"),
                      ("mfu", "mfu")):
        if getattr(args, flag) is not None:
            hw[key] = getattr(args, flag)
    for flag in ("budget", "qa_share", "inference_tokens", "constants", "fit_data"):
        if getattr(args, flag) is not None:
            data[flag] = getattr(args, flag)
    if args.synthetic_usd_per_mtok is not None:
        data["synthetic"] = {"usd_per_mtok": args.synthetic_usd_per_mtok}
    elif args.generator_params is not None or args.generator_tokens_per_s is not None:
        data["synthetic"] = {k: v for k, v in (
            ("generator_params", args.generator_params),
            ("tokens_per_s_per_gpu", args.generator_tokens_per_s)) if v is not None}
    if args.phase:
        phases = []
        for spec in args.phase:
            parts = spec.split(":")
            if len(parts) not in (3, 4):
                raise ConfigError(f"--phase {spec!r}: expected NAME:PARAMS:TOKENS[:SYNTH_SHARE]")
            phase = {"name": parts[0], "params": parts[1], "tokens": parts[2]}
            if len(parts) == 4:
                phase["synthetic_share"] = parts[3]
            phases.append(phase)
        data["phase"] = phases
    if args.reserve:
        reserved = data.setdefault("reserved", {})
        for spec in args.reserve:
            name, sep, share = spec.rpartition("=")
            if not sep or not name:
                raise ConfigError(f"--reserve {spec!r}: expected NAME=SHARE")
            reserved[name] = share
    return data


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fastsynth.errors import ConfigError
    from fastsynth.plan.budget import plan_budget
    from fastsynth.plan.config import inputs_from_mapping, read_fit_data
    from fastsynth.plan.report import build_report
    from fastsynth.plan.scenario import SEED_5M_ASSUMPTIONS, scenario_checks

    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0 (0: no intervals), got {args.bootstrap}")
    if not (args.scenario or args.config or args.budget):
        raise ConfigError("give --scenario, --config or at least --budget and --phase")
    data = _mapping(args)
    inputs = inputs_from_mapping(data, args.config or "flags")
    plan = plan_budget(inputs)
    checks = scenario_checks(inputs) if args.scenario else []
    fit = points = None
    if data.get("fit_data"):
        points = read_fit_data(data["fit_data"])
        if "n_params" in points:
            from fastsynth.plan.fit import fit_chinchilla
            fit = fit_chinchilla(points["n_params"], points["n_tokens"], points["loss"],
                                 n_bootstrap=args.bootstrap)
        else:
            from fastsynth.plan.rectified import fit_rectified
            fit = fit_rectified(points["n_tokens"], points["metric"],
                                n_bootstrap=args.bootstrap)
    title = "fastsynth plan" + (f" — scenario {args.scenario}" if args.scenario else "")
    paths = build_report(plan, Path(args.out), title=title, checks=checks, fit=fit,
                         fit_data=points,
                         assumptions=SEED_5M_ASSUMPTIONS if args.scenario else ())
    for item, ok in zip(plan.items, plan.fits):
        hours = f"{item.gpu_hours:>12,.0f} GPU-h" if item.gpu_hours is not None else " " * 18
        print(f"{item.name:<36} {hours} ${item.usd:>14,.0f}  {'' if ok else 'DOES NOT FIT'}")
    print(f"{'total':<36} {'':18} ${plan.total_usd:>14,.0f}  of ${inputs.budget_usd:,.0f}"
          f" ({'fits' if plan.all_fit else 'over budget'})")
    for s in plan.phases:
        ia = s.inference_aware
        print(f"{s.phase.name}: loss {s.loss:.4f}, {s.tokens_per_param:,.0f} tokens/param; "
              f"Chinchilla-optimal at same FLOPs {s.chinchilla_n / 1e9:.2f}B x "
              f"{s.chinchilla_d / 1e12:.3g}T; inference-aware at same loss "
              f"{ia.n_params / 1e9:.2f}B x {ia.n_tokens / 1e12:.3g}T")
    for c in checks:
        if c.ok is False:
            print(f"FLAG {c.topic}: {c.computed} — {c.note}")
    if fit is not None:
        print(f"fit: {fit.params()} R^2={fit.r2:.4f} "
              f"{'converged' if fit.converged else 'NOT CONVERGED: ' + fit.message}")
    print(f"wrote {paths['markdown']} and {paths['html']}")
    return 0
