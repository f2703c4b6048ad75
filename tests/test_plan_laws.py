"""Chinchilla laws, FLOP counts, inference-aware optimum, rectified law (fastsynth.plan.laws)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastsynth as fs
from fastsynth.errors import ConfigError
from fastsynth.plan import (chinchilla_loss, chinchilla_optimal, inference_aware_optimal,
                            prelearned_tokens, rectified_law, tokens_for_loss,
                            tokens_per_param, training_flops, training_flops_per_token)
from fastsynth.plan.constants import CONSTANT_SETS

# Hoffmann et al. (2022) Table 3: parameters, training FLOPs, tokens (Approach 1).
TABLE3 = [
    (400e6, 1.92e19, 8.0e9), (1e9, 1.21e20, 20.2e9), (10e9, 1.23e22, 205.1e9),
    (67e9, 5.76e23, 1.5e12), (175e9, 3.85e24, 3.7e12), (280e9, 9.90e24, 5.9e12),
    (520e9, 3.43e25, 11.0e12), (1e12, 1.27e26, 21.2e12), (10e12, 1.30e28, 216.2e12),
]


@pytest.mark.parametrize("n, flops, d", [r for r in TABLE3 if r[0] != 67e9])
def test_table3_rows_are_6nd_within_2_percent(n, flops, d):
    assert training_flops(n, d) == pytest.approx(flops, rel=0.02)


def test_table3_67b_row_is_the_exception():
    # The 67B row pairs Gopher's budget (5.76e23) with 1.5T tokens; 6ND gives 6.03e23,
    # 4.7% high — the table's own rounding, not ours (1.43T would match).
    n, flops, d = TABLE3[3]
    assert training_flops(n, d) / flops == pytest.approx(1.047, abs=0.002)


@pytest.mark.parametrize("name, n_opt", [("hoffmann", 32.2e9), ("hoffmann-unrounded", 40.4e9),
                                         ("epoch", 72.3e9)])
def test_optimal_n_at_gopher_budget(name, n_opt):
    n, d = chinchilla_optimal(5.76e23, name)
    assert n == pytest.approx(n_opt, rel=0.01)
    assert 6 * n * d == pytest.approx(5.76e23, rel=1e-12)


@pytest.mark.parametrize("name", list(CONSTANT_SETS))
def test_closed_form_optimum_matches_numeric_minimum(name):
    flops = 1e22
    n_opt, _ = chinchilla_optimal(flops, name)
    ns = np.exp(np.linspace(np.log(n_opt) - 1, np.log(n_opt) + 1, 20001))
    losses = chinchilla_loss(ns, flops / (6 * ns), name)
    assert ns[np.argmin(losses)] == pytest.approx(n_opt, rel=2e-4)


def test_loss_matches_formula_and_accepts_arrays():
    c = CONSTANT_SETS["epoch"]
    expected = c.E + c.A / 3e9 ** c.alpha + c.B / 4e12 ** c.beta
    assert chinchilla_loss(3e9, 4e12, "epoch") == pytest.approx(expected, rel=1e-14)
    out = chinchilla_loss(np.array([1e9, 3e9]), 4e12)
    assert out.shape == (2,) and out[0] > out[1]
    assert isinstance(chinchilla_loss(1e9, 1e10), float)
    assert fs.plan.chinchilla_loss is chinchilla_loss


def test_unrounded_set_is_the_exponentials():
    c = CONSTANT_SETS["hoffmann-unrounded"]
    assert math.log(c.A) == pytest.approx(6.0073404, abs=1e-12)
    assert math.log(c.E) == pytest.approx(0.5267228, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.floats(1e18, 1e27), st.sampled_from(list(CONSTANT_SETS)))
def test_optimum_scales_with_budget(flops, name):
    n1, d1 = chinchilla_optimal(flops, name)
    n2, d2 = chinchilla_optimal(flops * 10, name)
    c = CONSTANT_SETS[name]
    # N_opt grows as C^(beta/(alpha+beta)), D_opt as C^(alpha/(alpha+beta)).
    assert n2 / n1 == pytest.approx(10 ** (c.beta / (c.alpha + c.beta)), rel=1e-9)
    assert d2 / d1 == pytest.approx(10 ** (c.alpha / (c.alpha + c.beta)), rel=1e-9)


def test_tokens_per_param_reference_ratios():
    assert tokens_per_param(8e9, 15e12) == pytest.approx(1875)
    assert tokens_per_param(3e9, 4e12) == pytest.approx(1333.3, rel=1e-4)


class _Cfg:                   # duck-typed model config (the shape LlamaConfig has)
    n_layers, n_heads, head_dim = 28, 24, 128

    def num_params(self):
        return 3_212_749_824


def test_flops_per_token_from_config_object_dict_and_ints():
    t = 8192
    expected = 6 * 3_212_749_824 + 12 * 28 * 24 * 128 * t
    assert training_flops_per_token(_Cfg(), seq_len=t) == pytest.approx(expected, rel=1e-15)
    as_dict = {"n_layers": 28, "n_heads": 24, "dim": 3072, "n_params": 3_212_749_824}
    assert training_flops_per_token(as_dict, seq_len=t) == pytest.approx(expected, rel=1e-15)
    assert training_flops_per_token(seq_len=t, n_params=3_212_749_824, n_layers=28,
                                    n_heads=24, head_dim=128) == pytest.approx(expected)
    halved = training_flops_per_token(_Cfg(), seq_len=t, causal_halving=True)
    assert expected - halved == pytest.approx(6 * 28 * 24 * 128 * t)


def test_flops_per_token_missing_field_is_named():
    with pytest.raises(ConfigError, match="n_heads"):
        training_flops_per_token({"n_layers": 2, "head_dim": 64, "n_params": 1e6}, seq_len=128)


def test_inference_free_optimum_is_chinchilla_optimal():
    n, d = chinchilla_optimal(1e23)
    p = inference_aware_optimal(chinchilla_loss(n, d), 0.0)
    assert p.n_params == pytest.approx(n, rel=1e-4)
    assert p.n_tokens == pytest.approx(d, rel=1e-4)


def test_inference_demand_shrinks_the_model_and_beats_chinchilla():
    loss = chinchilla_loss(3e9, 4e12)
    prev = math.inf
    for d_inf in (1e11, 1e12, 1e13, 1e14):
        p = inference_aware_optimal(loss, d_inf)
        assert chinchilla_loss(p.n_params, p.n_tokens) == pytest.approx(loss, rel=1e-10)
        assert p.n_params < prev
        prev = p.n_params
        # No other point on the iso-loss curve has lower lifetime cost.
        for scale in (0.8, 0.95, 1.05, 1.25):
            n = p.n_params * scale
            d = tokens_for_loss(n, loss)
            assert 6 * n * d + 2 * n * d_inf >= p.total_flops * (1 - 1e-9)


def test_tokens_for_loss_inverts_the_law():
    d = tokens_for_loss(1e9, chinchilla_loss(1e9, 2e11))
    assert d == pytest.approx(2e11, rel=1e-9)
    assert tokens_for_loss(1e6, 1.8) == math.inf


def test_rectified_law_and_prelearned_tokens():
    d = np.array([1e8, 1e9])
    out = rectified_law(d, B=50.0, D_l=100.0, beta=0.34, E=0.1)
    assert out == pytest.approx(50.0 / (100.0 + d ** 0.34) + 0.1)
    assert prelearned_tokens(100.0, 0.5) == pytest.approx(1e4)


@pytest.mark.parametrize("call, name", [
    (lambda: chinchilla_optimal(0), "flops"),
    (lambda: chinchilla_optimal(-1e20), "flops"),
    (lambda: chinchilla_loss(0, 1e9), "n_params"),
    (lambda: chinchilla_loss(1e9, -5), "n_tokens"),
    (lambda: chinchilla_loss(float("nan"), 1e9), "n_params"),
    (lambda: tokens_per_param(1e9, 0), "n_tokens"),
    (lambda: chinchilla_optimal(1e20, "chinchilla"), "constants"),
    (lambda: inference_aware_optimal(1.5, 1e12), "target_loss"),
    (lambda: inference_aware_optimal(2.2, -1), "inference_tokens"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_flops_per_token_from_the_real_llama_config():
    from fastsynth.model.config import LlamaConfig

    cfg = LlamaConfig.preset("llama-3.2-3b")
    got = training_flops_per_token(cfg, seq_len=8192)
    assert got == 6 * 3_212_749_824 + 12 * 28 * 24 * 128 * 8192
