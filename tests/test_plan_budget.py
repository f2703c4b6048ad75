"""Budget planner (fastsynth.plan.budget) and the seed-5m scenario checks."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsynth.errors import ConfigError
from fastsynth.plan import chinchilla_loss
from fastsynth.plan.budget import (BudgetInputs, Hardware, Phase, SyntheticSource,
                                   plan_budget)
from fastsynth.plan.scenario import scenario_checks, seed_5m_inputs


def _inputs(**kw):
    base = dict(budget_usd=5e6, phases=(Phase("p", 1e9, 1e12), Phase("m", 3e9, 4e12, 0.5)),
                hardware=Hardware(gpu_hour_usd=2.0, mfu=0.4),
                synthetic=SyntheticSource(usd_per_mtok=1.0), qa_share=0.1,
                inference_tokens=1e12)
    base.update(kw)
    return BudgetInputs(**base)


def test_training_hours_and_dollars():
    plan = plan_budget(_inputs())
    item = next(i for i in plan.items if i.name == "training: m")
    hours = 6 * 3e9 * 4e12 / (989e12 * 0.4) / 3600      # 7.2e22 FLOPs at 40% of peak
    assert item.gpu_hours == pytest.approx(hours, rel=1e-12)
    assert item.gpu_hours == pytest.approx(50_556, rel=1e-4)
    assert item.usd == pytest.approx(hours * 2.0, rel=1e-12)


def test_synthetic_priced_per_token_and_by_generator():
    plan = plan_budget(_inputs())
    synth = next(i for i in plan.items if i.name == "synthetic data: m")
    assert synth.usd == pytest.approx(2e6) and synth.gpu_hours is None
    gen = SyntheticSource(generator_params=70e9)
    hw = Hardware(gpu_hour_usd=2.0)
    tps = 0.25 * 989e12 / (2 * 70e9)
    assert gen.throughput(hw) == pytest.approx(tps)
    hours, usd = gen.cost(1e12, hw)
    assert hours == pytest.approx(1e12 / tps / 3600) and usd == pytest.approx(hours * 2.0)
    measured = SyntheticSource(generator_params=70e9, tokens_per_s_per_gpu=1000.0)
    assert measured.cost(3.6e6, hw)[0] == pytest.approx(1.0)      # 1000 tok/s for 1 h


def test_items_sum_and_what_fits():
    plan = plan_budget(_inputs(reserved={"model development": 0.3}))
    assert plan.total_usd == pytest.approx(sum(i.usd for i in plan.items))
    assert plan.all_fit and all(plan.fits)
    tight = plan_budget(_inputs(budget_usd=1e6))
    assert not tight.all_fit
    # Charged in order: the cheap training runs fit, the $2M synthetic item does not.
    assert tight.fits[:2] == [True, True] and tight.fits[2] is False
    assert tight.remaining_usd == pytest.approx(1e6 - tight.total_usd)


def test_organic_data_cost_line():
    plan = plan_budget(_inputs(organic_usd_per_mtok=0.1))
    organic = next(i for i in plan.items if i.name == "organic data: m")
    assert organic.usd == pytest.approx(2e12 / 1e6 * 0.1)


def test_phase_summary_beside_optimal_points():
    plan = plan_budget(_inputs())
    s = plan.phases[1]
    assert s.tokens_per_param == pytest.approx(4e12 / 3e9)
    assert 6 * s.chinchilla_n * s.chinchilla_d == pytest.approx(7.2e22)
    assert s.chinchilla_loss < s.loss                   # optimum beats the over-trained run
    assert s.loss == pytest.approx(chinchilla_loss(3e9, 4e12))
    ia = s.inference_aware
    assert ia.target_loss == pytest.approx(s.loss)
    assert ia.total_flops <= s.lifetime_flops


@settings(max_examples=25, deadline=None)
@given(n=st.floats(1e8, 7e10), tpp=st.floats(1, 5000), d_inf=st.floats(0, 1e14))
def test_inference_aware_point_never_costs_more_than_the_chosen_one(n, tpp, d_inf):
    plan = plan_budget(_inputs(phases=(Phase("x", n, n * tpp),), synthetic=None,
                               inference_tokens=d_inf))
    s = plan.phases[0]
    assert s.inference_aware.total_flops <= s.lifetime_flops * (1 + 1e-7)


@pytest.mark.parametrize("make, match", [
    (lambda: _inputs(budget_usd=0), "budget"),
    (lambda: _inputs(budget_usd=-5), "budget"),
    (lambda: Hardware(mfu=0), "mfu"),
    (lambda: Hardware(mfu=1.2), "mfu"),
    (lambda: Hardware(gpu_hour_usd=-1), "gpu_hour_usd"),
    (lambda: Phase("a", 1e9, 0), "n_tokens"),
    (lambda: Phase("a", -1, 1e9), "n_params"),
    (lambda: Phase("a", 1e9, 1e9, synthetic_share=1.5), "synthetic_share"),
    (lambda: _inputs(qa_share=0.5, reserved={"dev": 0.6}), "exceed 100%"),
    (lambda: _inputs(synthetic=None), "no synthetic cost"),
    (lambda: _inputs(phases=()), "at least one phase"),
    (lambda: SyntheticSource(), "either usd_per_mtok or a generator"),
    (lambda: SyntheticSource(usd_per_mtok=1, generator_params=8e9), "either"),
    (lambda: _inputs(constants="kaplan"), "constants"),
])
def test_bad_input(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_seed_5m_reproduces_and_flags():
    inputs = seed_5m_inputs()
    checks = {c.topic: c for c in scenario_checks(inputs)}
    compute = checks["training compute 3B x 4T"]
    assert compute.ok is True and "50,556 GPU-hours" in compute.computed
    assert checks["budget split B vs A"].ok is False
    assert checks["'halved to $2M with synthetic data'"].ok is False
    synth = checks["SynthLLM '3B needs ~4T tokens'"]
    assert synth.ok is False and "889x" in synth.computed and "SFT" in synth.note
    plan = plan_budget(inputs)
    assert plan.inputs.budget_usd == 5e6 and plan.all_fit


def test_seed_5m_generator_costs_scale_with_generator_size():
    inputs = seed_5m_inputs(gpu_hour_usd=3.0)
    checks = {c.topic: c for c in scenario_checks(inputs)}
    big = checks["4T synthetic tokens, 70B-class generator"].computed
    small = checks["4T synthetic tokens, 8B generator"].computed
    assert "70B" in big and "8B" in small
    hw = inputs.hardware
    usd70 = SyntheticSource(generator_params=70e9).cost(4e12, hw)[1]
    usd8 = SyntheticSource(generator_params=8e9).cost(4e12, hw)[1]
    assert usd70 / usd8 == pytest.approx(70 / 8)
    assert f"${usd70 / 1e6:,.2f}M" in big
