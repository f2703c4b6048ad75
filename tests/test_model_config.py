"""LlamaConfig presets: exact parameter counts (checked against the built module on the meta
device) and clear errors for bad configurations."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsynth.errors import ConfigError
from fastsynth.model import PRESETS, LlamaConfig

torch = pytest.importorskip("torch")


def _module_params(cfg: LlamaConfig) -> int:
    from fastsynth.model import Llama
    with torch.device("meta"):
        model = Llama(cfg)
    return sum(p.numel() for p in model.parameters())  # tied weights are counted once


@pytest.mark.parametrize("name,expected", [
    ("llama-3.2-3b", 3_212_749_824),   # published; docs/architecture.md
    ("smollm2-135m", 134_515_008),
    ("llama-3.2-1b", 1_235_814_400),
    ("llama-3.1-8b", 8_030_261_248),
])
def test_preset_param_counts_match_published_and_module(name, expected):
    cfg = LlamaConfig.preset(name)
    assert cfg.num_params() == expected
    assert _module_params(cfg) == expected


def test_all_presets_build_and_count():
    for name in PRESETS:
        cfg = LlamaConfig.preset(name)
        assert cfg.name == name
        assert _module_params(cfg) == cfg.num_params()


def test_smollm2_fields():
    c = LlamaConfig.preset("smollm2-135m")
    assert (c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn, c.vocab) == \
        (30, 576, 9, 3, 64, 1536, 49152)
    assert c.rope_theta == 100000.0 and c.tied and c.rope_scaling is None
    c3 = LlamaConfig.preset("llama-3.2-3b")
    assert c3.rope_scaling is not None and c3.rope_scaling.factor == 32.0


def test_untied_counts_output_projection():
    c = LlamaConfig.preset("tiny")
    assert c.replace(tied=False).num_params() == c.num_params() + c.vocab * c.hidden
    assert c.num_params(include_embedding=False) == c.num_params() - c.vocab * c.hidden


def test_unknown_preset_names_it():
    with pytest.raises(ConfigError, match="llama-9b"):
        LlamaConfig.preset("llama-9b")


@pytest.mark.parametrize("bad,match", [
    ({"n_heads": 6, "n_kv_heads": 4}, "multiple of n_kv_heads"),
    ({"head_dim": 15}, "head_dim"),
    ({"hidden": 0}, "hidden"),
    ({"rope_theta": -1.0}, "rope_theta"),
])
def test_bad_config_names_field(bad, match):
    with pytest.raises(ConfigError, match=match):
        LlamaConfig.preset("tiny", **bad)


@settings(max_examples=25, deadline=None)
@given(layers=st.integers(1, 4), kv=st.integers(1, 4), group=st.integers(1, 4),
       hd=st.sampled_from([2, 8, 16]), hidden=st.integers(1, 64), ffn=st.integers(1, 96),
       vocab=st.integers(1, 300), tied=st.booleans())
def test_num_params_equals_module_count(layers, kv, group, hd, hidden, ffn, vocab, tied):
    cfg = LlamaConfig(n_layers=layers, hidden=hidden, n_heads=kv * group, n_kv_heads=kv,
                      head_dim=hd, ffn=ffn, vocab=vocab, tied=tied)
    assert cfg.num_params() == _module_params(cfg)
