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


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("lens,hkv,group", [([30, 1, 39, 30, 28], 2, 2), ([1], 1, 1),
                                            ([5, 0, 1, 7], 1, 3), ([16, 16], 2, 1)])
def test_varlen_self_attention_segment_path_matches_reference_with_gradients(
        monkeypatch, lens, hkv, group, causal):
    # Self-attention (cu_seqlens_q == cu_seqlens_k) must take the per-segment layout, not the
    # (total, total) masked path: the masked path is made to fail here.
    def no_masked(*a, **kw):
        raise AssertionError("masked path used for self-attention")
    monkeypatch.setattr(attn, "_sdpa_masked", no_masked)
    g = torch.Generator().manual_seed(sum(lens) + hkv + group)
    total, d = sum(lens), 16
    q = torch.randn(total, hkv * group, d, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(total, hkv, d, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(total, hkv, d, generator=g, dtype=torch.float64, requires_grad=True)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    out = attn.attention(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu.clone(),
                         max_seqlen_q=max(lens), max_seqlen_k=max(lens), causal=causal,
                         backend="sdpa")
    ref = torch.cat([reference(q[a:b], k[a:b], v[a:b], causal=causal)
                     for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    go = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(out, (q, k, v), go)
    want = torch.autograd.grad(ref, (q, k, v), go)
    for name, a, b in zip("qkv", got, want):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"d{name}")


def test_varlen_rows_without_visible_keys_are_zero():
    # q/k lengths differ: the masked path; causal with len_k < len_q leaves rows with no key
    g = torch.Generator().manual_seed(3)
    q = torch.randn(4, 2, 8, generator=g)
    k = torch.randn(2, 2, 8, generator=g)
    v = torch.randn(2, 2, 8, generator=g)
    out = attn.attention(q, k, v, cu_seqlens_q=torch.tensor([0, 4], dtype=torch.int32),
                         cu_seqlens_k=torch.tensor([0, 2], dtype=torch.int32), max_seqlen_q=4,
                         max_seqlen_k=2, backend="sdpa")
    assert torch.equal(out[:2], torch.zeros_like(out[:2]))
    torch.testing.assert_close(out[2:].double(), reference(q, k, v)[2:], atol=1e-5, rtol=1e-5)


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


# ------------------------------------------------------------- backend choice and the Triton kernel

@pytest.fixture
def fake_backend(monkeypatch):
    """A registered backend that records its calls; the default choice reset afterwards."""
    calls = []

    def fake_varlen(q, k, v, cu_q, cu_k, mq, mk, causal=True):
        calls.append("varlen")
        return torch.zeros_like(q)

    monkeypatch.delenv("FASTSYNTH_ATTENTION", raising=False)
    attn.set_backend(None)  # an earlier module in this process may have chosen one (train() does)
    attn.register_backend("test-fake", varlen=fake_varlen)
    yield calls
    attn.set_backend(None)
    attn._BACKENDS.pop("test-fake")


def _varlen_call(**kw):
    q = torch.randn(5, 2, 4)
    cu = torch.tensor([0, 2, 5], dtype=torch.int32)
    return attn.attention(q, q, q, cu_seqlens_q=cu, max_seqlen_q=3, **kw)


def test_auto_picks_sdpa_on_cpu_and_environment_variable_overrides(fake_backend, monkeypatch):
    q = torch.randn(5, 2, 64)
    assert attn.get_backend() == "auto"
    assert attn.resolve_backend(q) == "sdpa" and attn.resolve_backend(q, varlen=False) == "sdpa"
    monkeypatch.setenv("FASTSYNTH_ATTENTION", "test-fake")      # read at each call
    assert attn.resolve_backend(q) == "test-fake"
    _varlen_call()
    assert fake_backend == ["varlen"]
    _varlen_call(backend="sdpa")                                  # the call's choice wins
    assert fake_backend == ["varlen"]
    attn.set_backend("sdpa")                                      # set_backend beats the variable
    _varlen_call()
    assert fake_backend == ["varlen"] and attn.get_backend() == "sdpa"
    attn.set_backend(None)
    monkeypatch.setenv("FASTSYNTH_ATTENTION", "no-such-backend")
    with pytest.raises(ConfigError, match="FASTSYNTH_ATTENTION"):
        _varlen_call()


def test_triton_backend_needs_a_gpu_or_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the Triton backend is available")
    assert "triton" not in attn.backends()
    with pytest.raises(ConfigError, match="triton"):
        _varlen_call(backend="triton")


def test_triton_head_dims_listed_in_dispatch_match_the_kernel():
    pytest.importorskip("triton")
    from fastsynth.kernels.attention import HEAD_DIMS
    assert attn._TRITON_HEAD_DIMS == HEAD_DIMS


TRITON_VS_SDPA = """
import torch
from fastsynth.model import attention as attn
from fastsynth.kernels import attention as kern
kern.POISON = True                      # unwritten outputs or gradients become NaN
assert "triton" in attn.backends()
g = torch.Generator().manual_seed(0)
# GQA 3; per document (q, k) lengths: equal, more keys, fewer keys (rows that see no key), none
lq, lk = [7, 40, 9, 3], [7, 70, 2, 0]
cq = torch.tensor([0, *torch.tensor(lq).cumsum(0).tolist()], dtype=torch.int32)
ck = torch.tensor([0, *torch.tensor(lk).cumsum(0).tolist()], dtype=torch.int32)
q = torch.randn(sum(lq), 3, 64, generator=g)
k = torch.randn(sum(lk), 1, 64, generator=g)
v = torch.randn(sum(lk), 1, 64, generator=g)
dout = torch.randn(sum(lq), 3, 64, generator=g)
assert attn.resolve_backend(q) == "sdpa"  # auto on the CPU, even with the interpreter
for causal in (True,):                  # non-causal: tests/test_kernels_attention.py
    res = {}
    for name in ("triton", "sdpa"):
        xs = [t.clone().requires_grad_() for t in (q, k, v)]
        out = attn.attention(*xs, cu_seqlens_q=cq, cu_seqlens_k=ck, max_seqlen_q=max(lq),
                             max_seqlen_k=max(lk), causal=causal, backend=name)
        out.backward(dout)
        res[name] = [out.detach()] + [x.grad for x in xs]
    for a, b, what in zip(res["triton"], res["sdpa"], ("out", "dq", "dk", "dv")):
        assert not a.isnan().any(), what
        err = (a - b).abs().max().item()
        assert err < 2e-5, (causal, what, err)
    if causal:  # rows of document 2 before its keys start, and all of document 3: exactly 0
        assert (res["triton"][0][47:54] == 0).all() and (res["triton"][0][56:] == 0).all()
print("OK")
"""


def test_triton_backend_matches_sdpa_under_interpreter():
    import os
    import subprocess
    import sys
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("FASTSYNTH_ATTENTION", None)
    proc = subprocess.run([sys.executable, "-c", TRITON_VS_SDPA], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def test_attention_gets_one_dtype_under_autocast(monkeypatch):
    """With float32 weights under bf16 autocast, the rotary tables are float32; q and k must
    still reach the attention backend in the projection's bf16, like v (a fused kernel refuses
    mixed dtypes, and the automatic choice only picks one for fp16/bf16 queries). The values
    equal what SDPA's own autocast rounding gave before: float32 rotation, rounded to bf16."""
    from fastsynth.model import LlamaConfig
    from fastsynth.model.llama import Llama
    seen = []

    def recording_varlen(q, k, v, cu_q, cu_k, mq, mk, causal=True):
        seen.append((q.dtype, k.dtype, v.dtype))
        return attn._BACKENDS["sdpa"].varlen(q, k, v, cu_q, cu_k, mq, mk, causal=causal)

    monkeypatch.delenv("FASTSYNTH_ATTENTION", raising=False)
    attn.register_backend("test-recording", varlen=recording_varlen)
    try:
        torch.manual_seed(0)
        model = Llama(LlamaConfig.preset("tiny"))
        ids = torch.randint(0, model.config.vocab, (12,))
        pos = torch.tensor([*range(5), *range(7)])
        cu = torch.tensor([0, 5, 12], dtype=torch.int32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ids, pos, cu_seqlens=cu, max_seqlen=7)
            attn.set_backend("test-recording")
            logits_rec = model(ids, pos, cu_seqlens=cu, max_seqlen=7)
        assert seen and all(d == (torch.bfloat16,) * 3 for d in seen), seen
        assert torch.equal(logits, logits_rec)       # the recording backend is SDPA itself
    finally:
        attn.set_backend(None)
        attn._BACKENDS.pop("test-recording")
