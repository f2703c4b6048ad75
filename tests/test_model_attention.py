"""Attention dispatch: varlen (packed) and padded layouts against a float64 reference written
from the definition, GQA head mapping, bottom-right causal alignment, backend registry."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from fastsynth.errors import ConfigError  # noqa: E402
from fastsynth.model import attention as attn  # noqa: E402


def reference(q, k, v, causal=True, key_valid=None):
    """One sequence, float64, loops over heads: q (Tq, Hq, D), k/v (Tk, Hkv, D)."""
    tq, hq, d = q.shape
    tk, hkv, _ = k.shape
    g = hq // hkv
    out = torch.zeros(tq, hq, d, dtype=torch.float64)
    for h in range(hq):
        kh, vh = k[:, h // g].double(), v[:, h // g].double()   # query head h uses KV head h//g
        s = q[:, h].double() @ kh.T / math.sqrt(d)
        allowed = torch.ones(tq, tk, dtype=torch.bool)
        if causal:
            i = torch.arange(tq)[:, None]
            j = torch.arange(tk)[None, :]
            allowed &= j <= i + (tk - tq)
        if key_valid is not None:
            allowed &= key_valid[None, :]
        s = s.masked_fill(~allowed, float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        out[:, h] = p @ vh
    return out


@settings(max_examples=20, deadline=None)
@given(lens=st.lists(st.integers(1, 12), min_size=1, max_size=4), hkv=st.sampled_from([1, 2]),
       group=st.sampled_from([1, 3]), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_varlen_matches_per_sequence_reference(lens, hkv, group, causal, seed):
    g = torch.Generator().manual_seed(seed)
    total, d = sum(lens), 8
    q = torch.randn(total, hkv * group, d, generator=g)
    k = torch.randn(total, hkv, d, generator=g)
    v = torch.randn(total, hkv, d, generator=g)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    out = attn.attention(q, k, v, cu_seqlens_q=cu, max_seqlen_q=max(lens), causal=causal)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        ref = reference(q[a:b], k[a:b], v[a:b], causal=causal)
        torch.testing.assert_close(out[a:b].double(), ref, atol=1e-5, rtol=1e-5)


def test_varlen_bottom_right_alignment_with_longer_keys():
    g = torch.Generator().manual_seed(0)
    lq, lk = [2, 3], [5, 3]
    q = torch.randn(sum(lq), 2, 4, generator=g)
    k = torch.randn(sum(lk), 2, 4, generator=g)
    v = torch.randn(sum(lk), 2, 4, generator=g)
    cq = torch.tensor([0, 2, 5], dtype=torch.int32)
    ck = torch.tensor([0, 5, 8], dtype=torch.int32)
    out = attn.attention(q, k, v, cu_seqlens_q=cq, cu_seqlens_k=ck, max_seqlen_q=3,
                         max_seqlen_k=5)
    torch.testing.assert_close(out[:2].double(), reference(q[:2], k[:5], v[:5]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2:].double(), reference(q[2:], k[5:], v[5:]), atol=1e-5, rtol=0)


def test_padded_with_key_mask_and_cache_alignment():
    g = torch.Generator().manual_seed(1)
    b, tq, tk, d = 2, 3, 7, 8
    q = torch.randn(b, tq, 4, d, generator=g)
    k = torch.randn(b, tk, 2, d, generator=g)
    v = torch.randn(b, tk, 2, d, generator=g)
    mask = torch.ones(b, tk, dtype=torch.bool)
    mask[1, :2] = False                       # row 1 is left-padded by two slots
    out = attn.attention(q, k, v, key_mask=mask)
    for i in range(b):
        ref = reference(q[i], k[i], v[i], key_valid=mask[i])
        torch.testing.assert_close(out[i].double(), ref, atol=1e-5, rtol=1e-5)


def test_registry_dispatches_to_registered_backend_and_falls_back():
    calls = []

    def fake_varlen(q, k, v, cu_q, cu_k, mq, mk, causal=True):
        calls.append((tuple(q.shape), int(mq)))
        return torch.zeros_like(q)

    attn.register_backend("test-fake", varlen=fake_varlen)
    try:
        q = torch.randn(5, 2, 4)
        cu = torch.tensor([0, 2, 5], dtype=torch.int32)
        out = attn.attention(q, q, q, cu_seqlens_q=cu, max_seqlen_q=3, backend="test-fake")
        assert calls == [((5, 2, 4), 3)] and out.abs().sum() == 0
        # no padded function registered: the padded layout falls back to SDPA
        x = torch.randn(1, 3, 2, 4)
        ref = attn.attention(x, x, x, backend="sdpa")
        torch.testing.assert_close(attn.attention(x, x, x, backend="test-fake"), ref)
        assert "test-fake" in attn.backends()
    finally:
        attn._BACKENDS.pop("test-fake")


def test_unknown_backend_is_named():
    with pytest.raises(ConfigError, match="no-such"):
        attn.attention(torch.randn(1, 1, 1, 2), torch.randn(1, 1, 1, 2),
                       torch.randn(1, 1, 1, 2), backend="no-such")
    with pytest.raises(ConfigError, match="no-such"):
        attn.set_backend("no-such")
