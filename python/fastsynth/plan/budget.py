"""Budget planner: GPU-hours and dollars per line item, per phase, and what fits.

Inputs are plain dataclasses (:class:`Hardware`, :class:`SyntheticSource`, :class:`Phase`,
:class:`BudgetInputs`); :func:`plan_budget` returns a :class:`BudgetPlan` whose line items
sum to the total. Conventions: training compute is ``flops_per_token * tokens`` with
``6N`` per token unless a phase gives its own (e.g. from
:func:`fastsynth.plan.training_flops_per_token`); GPU-hours are
``flops / (peak * MFU) / 3600``; shares are fractions of the total budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fastsynth.errors import ConfigError
from fastsynth.plan.checks import fraction, nonnegative, positive
from fastsynth.plan.constants import DEFAULT_MFU, H100_BF16_PEAK_FLOPS, get_constants
from fastsynth.plan.inference import InferenceAwarePoint, inference_aware_optimal
from fastsynth.plan.laws import chinchilla_loss, chinchilla_optimal

# Assumption, not a measurement: on-demand/rental H100 SXM prices were roughly $2-3 per
# GPU-hour in 2025; set your own contract price.
DEFAULT_GPU_HOUR_USD = 2.50
# Assumption: batched decoding (vLLM-style, large batch) at ~25% of bf16 peak, i.e.
# tokens/s/GPU = 0.25 * 989e12 / (2 * N_generator): ~1.8k tok/s for a 70B generator and
# ~15k tok/s for an 8B one. Prompt (prefill) tokens are not counted. Replace with a
# measured tokens/s/GPU wherever you have one.
DEFAULT_DECODE_MFU = 0.25


@dataclass(frozen=True)
class Hardware:
    """Accelerator economics: price per GPU-hour, peak FLOP/s, and achieved MFU."""

    gpu_hour_usd: float = DEFAULT_GPU_HOUR_USD
    peak_flops: float = H100_BF16_PEAK_FLOPS
    mfu: float = DEFAULT_MFU

    def __post_init__(self) -> None:
        positive("gpu_hour_usd", self.gpu_hour_usd)
        positive("peak_flops", self.peak_flops)
        fraction("mfu", self.mfu, allow_zero=False)

    def gpu_hours(self, flops: float) -> float:
        """GPU-hours to execute ``flops`` at ``peak_flops * mfu``."""
        return flops / (self.peak_flops * self.mfu) / 3600.0


@dataclass(frozen=True)
class SyntheticSource:
    """How synthetic tokens are paid for: a price per million tokens, or a generator.

    Give ``usd_per_mtok`` (an API or contract price), or ``generator_params`` with an
    optional measured ``tokens_per_s_per_gpu`` (estimated from ``decode_mfu`` when absent).
    """

    usd_per_mtok: float | None = None
    generator_params: float | None = None
    tokens_per_s_per_gpu: float | None = None
    decode_mfu: float = DEFAULT_DECODE_MFU
    label: str = ""

    def __post_init__(self) -> None:
        if (self.usd_per_mtok is None) == (self.generator_params is None
                                           and self.tokens_per_s_per_gpu is None):
            raise ConfigError("synthetic cost: give either usd_per_mtok or a generator "
                              "(generator_params and/or tokens_per_s_per_gpu), not both/none")
        if self.usd_per_mtok is not None:
            nonnegative("synthetic usd_per_mtok", self.usd_per_mtok)
        if self.generator_params is not None:
            positive("generator_params", self.generator_params)
        if self.tokens_per_s_per_gpu is not None:
            positive("tokens_per_s_per_gpu", self.tokens_per_s_per_gpu)
        fraction("decode_mfu", self.decode_mfu, allow_zero=False)

    def throughput(self, hw: Hardware) -> float | None:
        """Generated tokens per second per GPU (None when priced per token)."""
        if self.tokens_per_s_per_gpu is not None:
            return self.tokens_per_s_per_gpu
        if self.generator_params is not None:
            return self.decode_mfu * hw.peak_flops / (2.0 * self.generator_params)
        return None

    def measured(self) -> bool:
        return self.tokens_per_s_per_gpu is not None

    def cost(self, tokens: float, hw: Hardware) -> tuple[float | None, float]:
        """``(gpu_hours or None, usd)`` to generate ``tokens``."""
        tps = self.throughput(hw)
        if tps is None:
            return None, tokens / 1e6 * float(self.usd_per_mtok)
        hours = tokens / tps / 3600.0
        return hours, hours * hw.gpu_hour_usd

    def describe(self, hw: Hardware) -> str:
        if self.usd_per_mtok is not None:
            return f"${self.usd_per_mtok:g} per million tokens"
        tps = self.throughput(hw)
        size = f"{self.generator_params / 1e9:g}B generator, " if self.generator_params else ""
        how = "measured" if self.measured() else f"estimated at {self.decode_mfu:.0%} decode MFU"
        return f"{self.label or size}{tps:,.0f} tokens/s/GPU ({how})"


@dataclass(frozen=True)
class Phase:
    """One training run: model size, tokens, and the synthetic share of those tokens."""

    name: str
    n_params: float
    n_tokens: float
    synthetic_share: float = 0.0
    flops_per_token: float | None = None      # default 6 * n_params

    def __post_init__(self) -> None:
        positive(f"phase {self.name!r} n_params", self.n_params)
        positive(f"phase {self.name!r} n_tokens", self.n_tokens)
        fraction(f"phase {self.name!r} synthetic_share", self.synthetic_share)
        if self.flops_per_token is not None:
            positive(f"phase {self.name!r} flops_per_token", self.flops_per_token)

    @property
    def training_flops(self) -> float:
        per_token = self.flops_per_token if self.flops_per_token else 6.0 * self.n_params
        return per_token * self.n_tokens


@dataclass(frozen=True)
class BudgetInputs:
    """Everything the planner needs. ``reserved`` maps a line item to a budget share."""

    budget_usd: float
    phases: tuple[Phase, ...]
    hardware: Hardware = field(default_factory=Hardware)
    synthetic: SyntheticSource | None = None
    qa_share: float = 0.10
    reserved: dict[str, float] = field(default_factory=dict)
    organic_usd_per_mtok: float = 0.0
    inference_tokens: float = 0.0
    constants: str = "hoffmann"

    def __post_init__(self) -> None:
        positive("budget", self.budget_usd)
        if not self.phases:
            raise ConfigError("phases: give at least one phase (model size and tokens)")
        fraction("qa_share", self.qa_share)
        for name, share in self.reserved.items():
            fraction(f"reserved share {name!r}", share)
        if self.qa_share + sum(self.reserved.values()) > 1:
            raise ConfigError("qa_share plus reserved shares exceed 100% of the budget")
        nonnegative("organic_usd_per_mtok", self.organic_usd_per_mtok)
        nonnegative("inference_tokens", self.inference_tokens)
        get_constants(self.constants)
        if any(p.synthetic_share > 0 for p in self.phases) and self.synthetic is None:
            raise ConfigError("a phase has a synthetic share but no synthetic cost is given "
                              "(usd_per_mtok or a generator)")


@dataclass(frozen=True)
class LineItem:
    """One cost: ``gpu_hours`` is None for items priced in dollars only."""

    name: str
    usd: float
    gpu_hours: float | None = None
    note: str = ""


@dataclass(frozen=True)
class PhaseSummary:
    """A phase beside the Chinchilla-optimal and inference-aware points of the law."""

    phase: Phase
    training_flops: float
    gpu_hours: float
    loss: float
    tokens_per_param: float
    chinchilla_n: float             # compute-optimal at the same training FLOPs
    chinchilla_d: float
    chinchilla_loss: float
    inference_aware: InferenceAwarePoint | None   # same loss, least lifetime FLOPs
    lifetime_flops: float           # 6ND (+ phase FLOPs/token) + 2 N D_inference


@dataclass
class BudgetPlan:
    """Line items in spending order; ``fits[i]`` says whether item i is still covered."""

    inputs: BudgetInputs
    items: list[LineItem]
    fits: list[bool]
    phases: list[PhaseSummary]

    @property
    def total_usd(self) -> float:
        return sum(i.usd for i in self.items)

    @property
    def remaining_usd(self) -> float:
        return self.inputs.budget_usd - self.total_usd

    @property
    def all_fit(self) -> bool:
        return self.remaining_usd >= 0


def _summarise(p: Phase, inputs: BudgetInputs) -> PhaseSummary:
    c = inputs.constants
    flops = p.training_flops
    n_opt, d_opt = chinchilla_optimal(6.0 * p.n_params * p.n_tokens, c)
    loss = chinchilla_loss(p.n_params, p.n_tokens, c)
    point = inference_aware_optimal(loss, inputs.inference_tokens, c)
    return PhaseSummary(
        phase=p, training_flops=flops, gpu_hours=inputs.hardware.gpu_hours(flops), loss=loss,
        tokens_per_param=p.n_tokens / p.n_params, chinchilla_n=n_opt, chinchilla_d=d_opt,
        chinchilla_loss=chinchilla_loss(n_opt, d_opt, c), inference_aware=point,
        lifetime_flops=flops + 2.0 * p.n_params * inputs.inference_tokens)


def plan_budget(inputs: BudgetInputs) -> BudgetPlan:
    """Cost every phase (training, synthetic and organic data), then QA and reserved shares.

    Items are charged in order (phases first, then QA, then reserved shares); an item
    "fits" when the running total is still within the budget.
    """
    hw = inputs.hardware
    items: list[LineItem] = []
    summaries = [_summarise(p, inputs) for p in inputs.phases]
    for p, s in zip(inputs.phases, summaries):
        items.append(LineItem(f"training: {p.name}", s.gpu_hours * hw.gpu_hour_usd,
                              s.gpu_hours, f"{s.training_flops:.3g} FLOPs at "
                              f"{hw.mfu:.0%} MFU of {hw.peak_flops / 1e12:g} TFLOP/s"))
        synth_tokens = p.synthetic_share * p.n_tokens
        if synth_tokens > 0 and inputs.synthetic is not None:
            hours, usd = inputs.synthetic.cost(synth_tokens, hw)
            items.append(LineItem(f"synthetic data: {p.name}", usd, hours,
                                  f"{synth_tokens:.3g} tokens, "
                                  f"{inputs.synthetic.describe(hw)}"))
        organic = p.n_tokens - synth_tokens
        if organic > 0 and inputs.organic_usd_per_mtok > 0:
            items.append(LineItem(f"organic data: {p.name}",
                                  organic / 1e6 * inputs.organic_usd_per_mtok, None,
                                  f"{organic:.3g} tokens at ${inputs.organic_usd_per_mtok:g}/M"))
    if inputs.qa_share > 0:
        items.append(LineItem("quality assurance", inputs.qa_share * inputs.budget_usd, None,
                              f"{inputs.qa_share:.0%} of budget (reserved share)"))
    for name, share in inputs.reserved.items():
        items.append(LineItem(name, share * inputs.budget_usd, None,
                              f"{share:.0%} of budget (reserved share)"))
    running, fits = 0.0, []
    for item in items:
        running += item.usd
        fits.append(running <= inputs.budget_usd * (1 + 1e-12))
    return BudgetPlan(inputs=inputs, items=items, fits=fits,
                      phases=summaries)
