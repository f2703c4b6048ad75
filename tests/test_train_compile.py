"""``TrainConfig(compile=True)``: the attention and MLP sub-layers compiled by torch.compile
(inductor, C++ code generation on the CPU) train to the same losses as eager mode."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_data import make_data  # noqa: E402

from fastsynth.model import LlamaConfig  # noqa: E402
from fastsynth.train.config import TrainConfig  # noqa: E402
from fastsynth.train.loop import train  # noqa: E402


def test_compiled_sublayers_train_like_eager():
    base = dict(model=LlamaConfig.preset("tiny", max_seq_len=64), seq_len=64, micro_batch_rows=4,
                steps=4, lr=3e-3, warmup_steps=1, log_every=1)
    eager = train(TrainConfig(**base), make_data()[0])   # a source is consumed: one each
    compiled = train(TrainConfig(**base, compile=True), make_data()[0])
    # Fused kernels sum in another order: float32 rounding, compounded over 4 updates.
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-4)
    assert compiled.losses[-1] < compiled.losses[0]
