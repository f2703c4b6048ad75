"""Hardening of fastsynth.model's config (issue 15): every LlamaConfig/RopeScaling field is
validated once, with its name; a NaN or negative epsilon used to pass and give NaN logits
later. (GGUF and HF loader checks are in test_weights_gguf.py.)"""
from __future__ import annotations

import math

import pytest

from fastsynth.errors import ConfigError
from fastsynth.model import LlamaConfig
from fastsynth.model.config import RopeScaling

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("field,value", [
    ("norm_eps", -1.0), ("norm_eps", 0.0), ("norm_eps", math.nan), ("norm_eps", math.inf),
    ("norm_eps", "1e-5"), ("rope_theta", math.inf), ("rope_theta", math.nan),
    ("tied", "no"), ("tied", 1), ("n_layers", True), ("hidden", 64.0),
    ("bos_token_id", -1), ("eos_token_id", "2"), ("rope_scaling", {"factor": 8.0}),
    ("name", None),
])
def test_every_config_field_is_checked(field, value):
    with pytest.raises(ConfigError, match=rf"LlamaConfig\.{field}"):
        LlamaConfig.preset("tiny").replace(**{field: value})


@pytest.mark.parametrize("kwargs,match", [
    ({"factor": 0.0}, "factor"), ({"factor": math.nan}, "factor"), ({"factor": -8.0}, "factor"),
    ({"low_freq_factor": 0.0}, "low_freq_factor"),
    ({"low_freq_factor": 4.0, "high_freq_factor": 4.0}, "high_freq_factor"),
    ({"high_freq_factor": math.inf}, "high_freq_factor"),
    ({"original_max_position": 0}, "original_max_position"),
    ({"original_max_position": 8192.5}, "original_max_position"),
])
def test_rope_scaling_fields_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=rf"RopeScaling\.{match}"):
        RopeScaling(**kwargs)


def test_valid_scaling_gives_finite_frequencies():
    from fastsynth.model.rope import inverse_frequencies
    cfg = LlamaConfig.preset("llama-3.2-1b")
    assert torch.isfinite(inverse_frequencies(cfg)).all()


@pytest.mark.parametrize("name,tied", [("tiny", True), ("tiny", False), ("smollm2-135m", True),
                                       ("llama-3.2-1b", True)])
def test_parameter_shapes_match_the_module(name, tied):
    """parameter_shapes() is what the loaders check checkpoints against: it must be exactly
    the module's state dict. (Every preset's module count is checked in test_model_config.)"""
    from fastsynth.model import Llama
    cfg = LlamaConfig.preset(name, tied=tied)
    with torch.device("meta"):
        model = Llama(cfg)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if cfg.tied:
        got.pop("lm_head.weight")  # the embedding, shared
    assert got == cfg.parameter_shapes()
    assert sum(math.prod(s) for s in got.values()) == cfg.num_params()


def test_gguf_rope_factors_of_the_wrong_length_are_named():
    """Was: a rope_freqs tensor of another length failed in numpy broadcasting."""
    import numpy as np

    from fastsynth.errors import InputError
    from fastsynth.model.gguf_file import _llama3_scaling_from_factors
    from fastsynth.model.rope import inverse_frequencies
    cfg = LlamaConfig.preset("llama-3.2-1b")
    plain = cfg.replace(rope_scaling=None)
    factors = (inverse_frequencies(plain) / inverse_frequencies(cfg)).double().numpy()
    assert _llama3_scaling_from_factors(plain, factors, "m.gguf").factor == 32.0
    for bad in (factors[:5], np.append(factors, 1.0), np.full_like(factors, np.nan)):
        with pytest.raises(InputError, match=r"m\.gguf: tensor rope_freqs\.weight"):
            _llama3_scaling_from_factors(plain, bad, "m.gguf")
