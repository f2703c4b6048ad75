"""oneDNN-prepacked linears: same products as the plain matmul up to float32 rounding, and a
packed Llama gives the plain model's logits and greedy tokens."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fastsynth.model import Llama, LlamaConfig  # noqa: E402
from fastsynth.model.cpu_linear import PackedLinear, onednn_packing_available, pack_linears  # noqa: E402

pytestmark = pytest.mark.skipif(not onednn_packing_available(),
                                reason="torch built without oneDNN")


@pytest.mark.parametrize("rows", [1, 7, 16, 300])
def test_packed_linear_matches_float64_product(rows):
    g = torch.Generator().manual_seed(rows)
    w = torch.randn(96, 80, generator=g)
    x = torch.randn(2, rows, 80, generator=g)
    y = PackedLinear(w)(x)
    ref = (x.double() @ w.double().T)
    assert y.shape == (2, rows, 96)
    torch.testing.assert_close(y.double(), ref, atol=1e-4, rtol=1e-5)


def test_packed_model_matches_plain_model():
    cfg = LlamaConfig.preset("tiny", tied=True)
    plain = Llama(cfg).reset_parameters(std=0.2, seed=5).eval()
    packed = pack_linears(Llama(cfg).reset_parameters(std=0.2, seed=5).eval())
    assert isinstance(packed.lm_head, PackedLinear)
    ids = torch.randint(0, cfg.vocab, (3, 30))
    with torch.inference_mode():
        a, b = plain(ids), packed(ids)
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-5)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
