"""The native decode step (fastsynth.model.native_decode, csrc/decode.cpp) and the 8-bit
activation product (fastsynth._native.quant_matmul_int8).

- int8 product: equals a float64 product of the gguf package's dequantised weights with the
  activations quantised as documented (d = max|x|/127 per 32-block, q = round(x/d)), within
  float32 accumulation error (hypothesis: both formats, AVX2 and scalar, odd shapes, 1..9 rows);
  and stays within the documented quantisation bound of the unquantised product.
- float32 mode on the embedded SmolLM2: decode logits within 1e-4 of the float64 model (the
  contract of tests/test_quant_matvec.py), greedy tokens equal to the torch path, batched with
  left padding and a key mask equal to the torch path within 1e-4.
- int8 mode: logits within INT8_MAX_LOGIT_ERROR of float32 mode, greedy argmax mostly agreeing.
- bad input: ValueError/ConfigError naming the argument.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

from fastsynth import _native  # noqa: E402
from fastsynth.errors import ConfigError  # noqa: E402

from test_quant_matvec import BLOCK_BYTES, F32_EPS, dequantised, random_blocks  # noqa: E402


def q8_reference(x: np.ndarray) -> np.ndarray:
    """x quantised as the kernel documents it, dequantised, float64 (batch, in)."""
    b, n = x.shape
    blocks = x.astype(np.float32).reshape(b, n // 32, 32)
    d = (np.abs(blocks).max(axis=-1, keepdims=True) / np.float32(127)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.clip(np.rint(blocks * inv), -127, 127)
    return (q.astype(np.float64) * d.astype(np.float64)).reshape(b, n)


@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(["q4_1", "q8_0"]), out=st.integers(1, 70), nblk=st.integers(1, 10),
       batch=st.integers(1, 9), simd=st.booleans(), seed=st.integers(0, 2 ** 31))
def test_int8_product_matches_float64_of_quantised_activations(fmt, out, nblk, batch, simd, seed):
    inp = 32 * nblk
    blocks = random_blocks(fmt, out, inp, seed)
    w = dequantised(blocks, fmt)
    x = np.random.default_rng(seed).standard_normal((batch, inp)).astype(np.float32)
    x[:, :32] *= 100.0 if seed % 2 else 0.0      # a loud block, or an all-zero one
    y = _native.quant_matmul_int8(blocks, fmt, out, x, threads=2, simd=simd)
    xq = q8_reference(x)
    ref = xq @ w.T
    # float32 accumulation of the per-block scaled sums (the integer sums are exact)
    bound = (inp + 2) * F32_EPS * (np.abs(xq) @ np.abs(w).T)
    assert y.shape == (batch, out) and y.dtype == np.float32
    assert np.all(np.abs(y - ref) <= bound + 1e-30)
    # and the documented quantisation error against the unquantised activations:
    # |x - xq| <= d/2 per element, d = block max / 127
    half_step = np.repeat(np.abs(x.reshape(batch, nblk, 32)).max(-1) / 254.0, 32, axis=1)
    qbound = half_step.astype(np.float64) @ np.abs(w).T * (1 + 1e-5) + bound
    assert np.all(np.abs(y - x.astype(np.float64) @ w.T) <= qbound)


def test_decode_exp_is_within_2_ulp_of_float64_and_clamps_as_documented():
    """The step's vectorised e^x (SwiGLU, softmax): within 2 ulp of the float64 value over
    [-87, 88] (the AVX2 path runs on 8 values at a time; the tail and non-AVX2 CPUs use
    std::exp); out-of-range inputs clamp to e^-87.3 / e^88.3 instead of 0 / inf."""
    x = np.concatenate([np.linspace(-87, 88, 400_003), np.random.default_rng(0).standard_normal(
        100_000) * 6]).astype(np.float32)
    y = _native.decode_exp(x)
    ref = np.exp(x.astype(np.float64))
    ulps = np.abs(y - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)
    assert y.dtype == np.float32 and ulps.max() <= 2.0, ulps.max()
    if _native.quant_simd_available():
        edge = _native.decode_exp(np.array([-1000, -90, 0, 1, 89, 1000, 2, 3], np.float32))
        assert edge[0] == edge[1] and abs(edge[0] / np.exp(-87.3) - 1) < 1e-5
        assert np.isfinite(edge[4]) and edge[4] == edge[5] and edge[2] == 1.0


def test_int8_product_bad_arguments_are_named():
    blocks = random_blocks("q4_1", 4, 64, 0)
    x = np.zeros((1, 64), np.float32)
    with pytest.raises(ValueError, match="fmt"):
        _native.quant_matmul_int8(blocks, "q5_0", 4, x)
    with pytest.raises(ValueError, match="blocks"):
        _native.quant_matmul_int8(blocks[:3], "q4_1", 4, x)
    with pytest.raises(ValueError, match="x"):
        _native.quant_matmul_int8(blocks, "q4_1", 4, x.astype(np.float64))
    with pytest.raises(ValueError, match="out_features"):
        _native.quant_matmul_int8(blocks, "q4_1", 0, x)


# ---- the embedded model ----------------------------------------------------------------------
PROMPTS = ["What is the capital of France?", "Write a haiku about autumn.",
           "What does a CPU do?", "Name the planets of the solar system."]


@pytest.fixture(scope="module")
def embedded():
    from fastsynth.model import load
    from fastsynth.model.loading import default_model_path
    from fastsynth.model.quant_linear import quantize_linears
    try:
        path = default_model_path()
    except Exception as e:  # noqa: BLE001 - the wheel is optional
        pytest.skip(f"embedded model unavailable: {e}")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    model, tok = load(path)
    quantize_linears(model, path)
    prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}]))
               for q in PROMPTS]
    yield model, tok, path, prompts
    torch.set_num_threads(before)


def _teacher_forced(model, ids, cont):
    """Next-token logits (float64) after the prompt and after each token of `cont` (batch 1)."""
    from fastsynth.model.llama import KVCache
    cache = KVCache(model.config, 1, len(ids) + len(cont) + 1, dtype=model.embed.weight.dtype)
    with torch.inference_mode():
        out = [model(torch.tensor([ids]), cache=cache, last_only=True)[0, -1]]
        out += [model(torch.tensor([[t]]), cache=cache)[0, -1] for t in cont]
    return torch.stack(out).double()


def test_float32_mode_decode_logits_match_float64_model_within_1e_4(embedded):
    from fastsynth.model import load
    from fastsynth.model.native_decode import attach_native_decode
    model, tok, path, prompts = embedded
    attach_native_decode(model, "float32")
    ids = prompts[0]
    ref_model, _ = load(path, dtype=torch.float64)
    ref = _teacher_forced(ref_model, ids[:-4], ids[-4:])
    del ref_model
    got = _teacher_forced(model, ids[:-4], ids[-4:])
    assert (got - ref).abs().max().item() <= 1e-4


def test_float32_mode_equals_torch_path_at_batch_1_and_batched(embedded):
    from fastsynth.model.generation import DecodeBatch, generate
    from fastsynth.model.native_decode import attach_native_decode
    model, tok, _, prompts = embedded
    model.native_decode = None
    torch_tokens = [generate(model, tok, [p], max_new_tokens=6)[0].tokens for p in prompts]
    # batched steps with left padding (the key mask) and a row joining mid-decode, torch path
    def joined_logits():
        batch = DecodeBatch(model, tok)
        batch.add(0, prompts[0], max_new_tokens=8)
        batch.add(1, prompts[1], max_new_tokens=8)
        for _ in range(3):
            batch.step()
        batch.add(2, prompts[2], max_new_tokens=8)
        seen = []
        for _ in range(3):
            batch.step()
            seen.append(batch.logits.clone())
        return seen
    ref = joined_logits()
    nd = attach_native_decode(model, "float32")
    calls = []
    step = nd.step
    nd.step = lambda *a, **k: calls.append(1) or step(*a, **k)   # count native steps taken
    assert [generate(model, tok, [p], max_new_tokens=6)[0].tokens for p in prompts] == torch_tokens
    assert [g.tokens for g in generate(model, tok, prompts, max_new_tokens=6)] == torch_tokens
    got = joined_logits()
    assert len(calls) >= 2 * 5 + 6
    for a, b in zip(got, ref):
        assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-4
    model.native_decode = None


def test_int8_mode_stays_within_its_documented_bound(embedded):
    from fastsynth.model.generation import generate
    from fastsynth.model.native_decode import INT8_MAX_LOGIT_ERROR, attach_native_decode
    model, tok, _, prompts = embedded
    worst, agree, total = 0.0, 0, 0
    for ids in prompts:
        attach_native_decode(model, "float32")
        cont = generate(model, tok, [ids], max_new_tokens=12)[0].tokens
        a = _teacher_forced(model, ids, cont)
        attach_native_decode(model, "int8")
        b = _teacher_forced(model, ids, cont)
        worst = max(worst, (a[1:] - b[1:]).abs().max().item())
        agree += int((a[1:].argmax(-1) == b[1:].argmax(-1)).sum())
        total += len(cont)
        # the prompt's logits come from the torch prefill: unchanged by the mode
        assert torch.equal(a[0], b[0])
    model.native_decode = None
    assert 0 < worst <= INT8_MAX_LOGIT_ERROR      # not exact, but within the documented bound
    assert agree >= 0.85 * total   # measured 197/204 over 8 prompts x 32 tokens (native_decode.py)


def test_bad_input_is_named(embedded):
    from fastsynth.model.llama import KVCache
    from fastsynth.model.native_decode import NativeDecode
    model, _, _, _ = embedded
    nd = NativeDecode(model)
    dec = nd.decoder
    cache = KVCache(model.config, 1, 4)
    k, v = [t.numpy() for t in cache.k], [t.numpy() for t in cache.v]
    one = np.array([1], np.int64)
    with pytest.raises(ValueError, match="tokens"):
        dec.step(np.array([dec.vocab], np.int64), one, k, v, 0)
    with pytest.raises(ValueError, match="length"):
        dec.step(one, one, k, v, 4)
    with pytest.raises(ValueError, match="mode"):
        dec.step(one, one, k, v, 0, mode="int4")
    with pytest.raises(ValueError, match="k_cache"):
        dec.step(one, one, k[:-1], v, 0)
    with pytest.raises(ValueError, match=r"v_cache\[0\]"):
        dec.step(one, one, k, [np.zeros((1, 4, 2, 2), np.float32)] + v[1:], 0)
    with pytest.raises(ValueError, match="key_mask"):
        dec.step(one, one, k, v, 2, key_mask=np.ones((1, 2), bool))
    with pytest.raises(ConfigError, match="mode"):
        NativeDecode(model, "int4")
    from fastsynth.llm.local import LocalGenerator
    with pytest.raises(ConfigError, match="native_decode"):
        LocalGenerator(threads=1, native_decode="fast")
