"""The Llama module: packed and padded layouts agree, KV-cached decoding equals a full forward,
and checkpoints round-trip with transformers' LlamaForCausalLM (logits compared)."""
from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from fastsynth.errors import ConfigError, InputError  # noqa: E402
from fastsynth.model import Llama, LlamaConfig, RopeScaling  # noqa: E402
from fastsynth.model.hf import read_hf_dir, save_hf  # noqa: E402
from fastsynth.model.llama import KVCache  # noqa: E402
from fastsynth.model.rope import inverse_frequencies  # noqa: E402


def tiny(**kw) -> Llama:
    torch.manual_seed(0)
    return Llama(LlamaConfig.preset("tiny", **kw)).reset_parameters(std=0.2, seed=0).eval()


def test_packed_equals_separate_documents():
    m = tiny()
    lens = [5, 1, 9]
    docs = [torch.randint(0, 512, (n,)) for n in lens]
    cu = torch.tensor([0, 5, 6, 15], dtype=torch.int32)
    pos = torch.cat([torch.arange(n) for n in lens])
    with torch.no_grad():
        packed = m(torch.cat(docs), pos, cu_seqlens=cu, max_seqlen=9)
        for d, a, b in zip(docs, cu[:-1], cu[1:]):
            torch.testing.assert_close(packed[a:b], m(d[None])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
def test_head_false_returns_final_norm_hidden_states(tied):
    m = tiny(tied=tied)
    ids = torch.randint(0, 512, (2, 7))
    cu = torch.tensor([0, 3, 10], dtype=torch.int32)
    pos = torch.cat([torch.arange(3), torch.arange(7)])
    with torch.no_grad():
        for kw in ({}, {"last_only": True}):
            logits = m(ids, **kw)
            hidden = m(ids, head=False, **kw)
            assert hidden.shape == logits.shape[:-1] + (m.config.hidden,)
            torch.testing.assert_close(hidden @ m.lm_head.weight.T, logits, atol=1e-5, rtol=1e-5)
        flat = ids[:, :5].reshape(-1)
        logits = m(flat, pos, cu_seqlens=cu, max_seqlen=7)
        hidden = m(flat, pos, cu_seqlens=cu, max_seqlen=7, head=False)
        assert hidden.shape == (10, m.config.hidden)
        torch.testing.assert_close(hidden @ m.lm_head.weight.T, logits, atol=1e-5, rtol=1e-5)
        # the final RMSNorm is applied (its weight is ones after reset): unit RMS rows
        rms = hidden.pow(2).mean(-1).sqrt()
        torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-3, rtol=0)


def test_kv_cache_decode_equals_full_forward():
    m = tiny(tied=False, rope_scaling=RopeScaling(factor=4.0, original_max_position=16))
    ids = torch.randint(0, 512, (2, 12))
    with torch.no_grad():
        full = m(ids)
        cache = KVCache(m.config, 2, 16)
        pre = m(ids[:, :7], cache=cache)
        steps = [m(ids[:, t:t + 1], cache=cache) for t in range(7, 12)]
    assert cache.length == 12
    torch.testing.assert_close(torch.cat([pre, *steps], dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padding_with_positions_and_mask_equals_unpadded():
    m = tiny()
    ids = torch.randint(0, 512, (4,))
    padded = torch.cat([torch.zeros(3, dtype=torch.long), ids])[None]
    pos = torch.tensor([[0, 0, 0, 0, 1, 2, 3]])
    mask = torch.tensor([[False] * 3 + [True] * 4])
    with torch.no_grad():
        a = m(padded, pos, key_mask=mask)[0, 3:]
        b = m(ids[None])[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_llama3_rope_scaling_matches_formula():
    cfg = LlamaConfig.preset("llama-3.2-3b")
    s = cfg.rope_scaling
    ours = inverse_frequencies(cfg).double()
    for j, f in enumerate(ours.tolist()):
        base = 1.0 / (cfg.rope_theta ** (2 * j / cfg.head_dim))
        wavelen = 2 * math.pi / base
        if wavelen < s.original_max_position / s.high_freq_factor:
            want = base
        elif wavelen > s.original_max_position / s.low_freq_factor:
            want = base / s.factor
        else:
            smooth = (s.original_max_position / wavelen - s.low_freq_factor) / \
                (s.high_freq_factor - s.low_freq_factor)
            want = (1 - smooth) * base / s.factor + smooth * base
        assert f == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("kw", [
    {},                                                            # tied, plain RoPE
    {"tied": False, "rope_scaling": RopeScaling(factor=8.0, original_max_position=32),
     "rope_theta": 500000.0},                                      # untied, llama3 scaling
])
def test_saved_checkpoint_loads_in_transformers(tmp_path, kw):
    transformers = pytest.importorskip("transformers")
    m = tiny(**kw)
    save_hf(m, tmp_path)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, m(ids), atol=1e-4, rtol=1e-4)


def test_transformers_checkpoint_loads_in_fastsynth(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, head_dim=8, vocab_size=300, tie_word_embeddings=False,
        rope_theta=5000.0, rms_norm_eps=1e-6, max_position_embeddings=128)
    torch.manual_seed(1)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours_cfg, state = read_hf_dir(tmp_path)
    assert (ours_cfg.n_heads, ours_cfg.n_kv_heads, ours_cfg.head_dim, ours_cfg.tied) == (6, 2, 8, False)
    from fastsynth.model.loading import load
    with pytest.raises(InputError, match="tokenizer.json"):
        load(tmp_path)                     # no tokenizer saved: named clearly
    m = Llama(ours_cfg).eval()
    m.load_state_dict(state)
    ids = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(m(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)


def test_bad_hf_checkpoints_are_named(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        read_hf_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="gpt2"):
        read_hf_dir(tmp_path)
    m = tiny()
    save_hf(m, tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="safetensors"):
        read_hf_dir(tmp_path / "ok")
