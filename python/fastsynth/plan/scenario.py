"""The reference scenario ``seed-5m``: its inputs, its own figures, and checks against them.

A startup's plan (docs/architecture.md, "The reference scenario"): $5M a year, a 3B model on 4T
tokens, synthetic data at $1 per million tokens, 40% of the budget to data generation and
10% to QA, a 1B + 1T prototype first. Its figures are inputs to check, not truths:
:func:`scenario_checks` puts each claimed figure beside the computed one and says where
they disagree or where a figure rests on an extrapolation.

Assumptions added here (not in the scenario, all overridable): GPU price
(:data:`fastsynth.plan.budget.DEFAULT_GPU_HOUR_USD`), 40% MFU, the decode throughput of the
two reference generators (70B-class and 8B, estimated at
:data:`~fastsynth.plan.budget.DEFAULT_DECODE_MFU` of bf16 peak), a 50% synthetic share of
the 3B run (one reading of "$4M halved to $2M with synthetic data"), 1T lifetime inference
tokens, and an 8,192-token training context for the attention FLOPs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastsynth.plan.budget import (DEFAULT_DECODE_MFU, DEFAULT_GPU_HOUR_USD, BudgetInputs,
                                   SyntheticSource)
from fastsynth.plan.laws import prelearned_tokens, training_flops_per_token

# llama-3.2-3b shape (docs/architecture.md, "Reference numbers"): 28 layers, 24 query heads of dim 128.
LLAMA32_3B = {"n_params": 3_212_749_824, "n_layers": 28, "n_heads": 24, "head_dim": 128}
SEQ_LEN = 8192                 # assumption: the context length of the main run
SYNTHLLM_MAX_MEASURED = 4.5e9  # SynthLLM's largest measured synthetic-token point
SYNTHLLM_FLATTENS = 300e9      # SynthLLM: gains flatten past ~300B tokens


@dataclass(frozen=True)
class Check:
    """A scenario figure beside the computed one; ``ok`` is None for notes."""

    topic: str
    claimed: str
    computed: str
    ok: bool | None
    note: str


def seed_5m_mapping() -> dict[str, Any]:
    """The scenario in the TOML/mapping shape of :mod:`fastsynth.plan.config`."""
    return {
        "budget": 5e6, "constants": "hoffmann", "qa_share": 0.10, "inference_tokens": 1e12,
        "hardware": {"gpu_hour_usd": DEFAULT_GPU_HOUR_USD, "peak_tflops": 989, "mfu": 0.40},
        "synthetic": {"usd_per_mtok": 1.0},
        "phase": [{"name": "prototype 1B x 1T", "params": 1e9, "tokens": 1e12},
                  {"name": "main 3B x 4T", "params": 3e9, "tokens": 4e12,
                   "synthetic_share": 0.5}],
    }


SEED_5M_ASSUMPTIONS = (
    f"GPU price ${DEFAULT_GPU_HOUR_USD}/H100-hour (2025 rental range $2-3)",
    "40% MFU (strong stacks: 35-45% on 1-8B models)",
    "50% of the 3B run's 4T tokens synthetic (one reading of '$4M halved to $2M')",
    "1T lifetime inference tokens for the inference-aware point",
    f"generator decode at {DEFAULT_DECODE_MFU:.0%} of bf16 peak (70B-class ~1.8k, 8B ~15k "
    "tokens/s/GPU); replace with measured throughput",
    f"{SEQ_LEN}-token context for the attention-FLOPs line",
)


def seed_5m_inputs(gpu_hour_usd: float | None = None, mfu: float | None = None
                   ) -> BudgetInputs:
    """The scenario as planner inputs (synthetic priced at the scenario's $1/M tokens)."""
    from fastsynth.plan.config import inputs_from_mapping

    data = seed_5m_mapping()
    if gpu_hour_usd is not None:
        data["hardware"]["gpu_hour_usd"] = gpu_hour_usd
    if mfu is not None:
        data["hardware"]["mfu"] = mfu
    return inputs_from_mapping(data, "scenario seed-5m")


def reference_generators() -> dict[str, SyntheticSource]:
    """The 70B-class and 8B generators the scenario's synthetic cost should be read against."""
    return {"70B-class generator": SyntheticSource(generator_params=70e9),
            "8B generator": SyntheticSource(generator_params=8e9)}


def _usd(x: float) -> str:
    return f"${x / 1e6:,.2f}M" if abs(x) >= 1e6 else f"${x / 1e3:,.0f}k"


def scenario_checks(inputs: BudgetInputs) -> list[Check]:
    """Claimed-versus-computed checks of the seed-5m plan under ``inputs``' hardware."""
    hw = inputs.hardware
    budget = inputs.budget_usd
    checks: list[Check] = []
    main = inputs.phases[-1]
    flops = 6.0 * main.n_params * main.n_tokens
    hours = hw.gpu_hours(flops)
    checks.append(Check(
        "training compute 3B x 4T", "7.2e22 FLOPs, ~50k H100-hours at 40% MFU",
        f"{flops:.3g} FLOPs (6ND), {hours:,.0f} GPU-hours at {hw.mfu:.0%} MFU = "
        f"{_usd(hours * hw.gpu_hour_usd)} at ${hw.gpu_hour_usd:g}/h "
        f"({hours * hw.gpu_hour_usd / budget:.1%} of the budget)",
        abs(flops - 7.2e22) / 7.2e22 < 0.01 and abs(hours - 50e3) / 50e3 < 0.05,
        "the final run is a small share of the budget" if hours * hw.gpu_hour_usd < 0.2 * budget
        else "the final run is a large share of the budget"))
    per_token = training_flops_per_token(seq_len=SEQ_LEN, **LLAMA32_3B)
    ratio = per_token / (6.0 * LLAMA32_3B["n_params"])
    checks.append(Check(
        "attention FLOPs", "6ND only",
        f"6N + 12 L H hd T at T={SEQ_LEN} (no causal halving) is {ratio:.2f}x 6N for "
        f"llama-3.2-3b: {hw.gpu_hours(per_token * main.n_tokens):,.0f} GPU-hours",
        None, "6ND undercounts long-context training; MFU quoted on 6N flatters"))
    data_cost = main.n_tokens / 1e6 * 1.0
    checks.append(Check(
        "data at $1/M tokens", "4T tokens = $4M", _usd(data_cost), abs(data_cost - 4e6) < 1,
        f"arithmetic holds; it is {data_cost / budget:.0%} of the whole budget"))
    buys = 2e6 / 1.0 * 1e6
    checks.append(Check(
        "'halved to $2M with synthetic data'", "$2M for 4T tokens",
        f"$2M at $1/M buys {buys:.3g} synthetic tokens",
        False, "either half the 4T is synthetic (the rest organic, at ~$0) or the price must "
               "be $0.50/M; the plan does not say which (the planner assumes a 50% share)"))
    gen, qa = 0.40 * budget, 0.10 * budget
    runs_usd = sum(hw.gpu_hours(6.0 * p.n_params * p.n_tokens) for p in inputs.phases) \
        * hw.gpu_hour_usd
    checks.append(Check(
        "budget split A", "$2M (40%) data generation, $0.5M (10%) QA",
        f"{_usd(gen)} + {_usd(qa)} = 50%; the other {_usd(budget - gen - qa)} is unassigned",
        True, "consistent arithmetic, but only half the budget is allocated"))
    checks.append(Check(
        "budget split B vs A", "$1.5M dev (30%), $2.5M data (50%), $1M compute (20%)",
        "data 50% = A's generation 40% + QA 10% only if QA counts as data; "
        f"compute $1M vs {_usd(runs_usd)} for the {len(inputs.phases)} training runs", False,
        f"the two splits are different plans; split B's compute line is "
        f"{1e6 / runs_usd:.1f}x what the runs cost (room for ablations, or an overestimate)"))
    for label, gen_src in reference_generators().items():
        g_hours, g_usd = gen_src.cost(main.n_tokens, hw)
        checks.append(Check(
            f"4T synthetic tokens, {label}", "$1/M tokens => $4M",
            f"{gen_src.describe(hw)}: {g_hours:,.0f} GPU-hours = {_usd(g_usd)} "
            f"(${g_usd / (main.n_tokens / 1e6):.3f}/M)", None,
            "decode throughput is an assumption (see DEFAULT_DECODE_MFU); measure yours"))
    # $1 buys 1e6 tokens and 1/price GPU-hours: break-even = 1e6 * price / 3600 tokens/s.
    breakeven = 1e6 * hw.gpu_hour_usd / 3600.0
    rates = {k: g.throughput(hw) / breakeven for k, g in reference_generators().items()}
    checks.append(Check(
        "what $1/M implies", "$1 per million tokens",
        f"at ${hw.gpu_hour_usd:g}/GPU-hour that is {breakeven:,.0f} generated tokens/s/GPU",
        None, "; ".join(f"a self-hosted {k} runs at {r:.1f}x that rate" for k, r in
                        rates.items())))
    extrap = main.n_tokens / SYNTHLLM_MAX_MEASURED
    checks.append(Check(
        "SynthLLM '3B needs ~4T tokens'", "4T tokens for a 3B model",
        f"{extrap:,.0f}x past SynthLLM's largest measured point ({SYNTHLLM_MAX_MEASURED:.2g}); "
        f"gains flatten past ~{SYNTHLLM_FLATTENS:.0e} tokens", False,
        "an extrapolated SFT figure (synthetic tokens on a pretrained base), not a "
        "pre-training token count"))
    dl_units = prelearned_tokens(5e11 ** 0.34, 0.34)
    checks.append(Check(
        "rectified law D_l", "D_l ~ 500B pre-learned tokens, beta = 0.34",
        f"D_l adds to D^beta, so 500B tokens means D_l = (5e11)^0.34 = {5e11 ** 0.34:,.0f} "
        f"(round trip {dl_units:.3g} tokens); D_l = 5e11 itself would dwarf D^beta "
        f"= {main.n_tokens ** 0.34:,.0f} at 4T and flatten the law", None,
        "state D_l's units whenever quoting it"))
    tpp = main.n_tokens / main.n_params
    checks.append(Check(
        "tokens per parameter", "~1,333 (Llama 3 8B: 1,875)", f"{tpp:,.0f}",
        abs(tpp - 1333) < 1, "far past Chinchilla's ~20: pays at inference time, not in loss "
                             "per training FLOP"))
    return checks
