"""The training loop: chunked loss, accumulation, schedules, metrics,
divergence and memory errors, config files, FLOPs, and export to HF / the local generator."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from train_data import ListSource, make_data, markov_documents, packed_batches  # noqa: E402

from fastsynth.errors import ConfigError, InputError  # noqa: E402
from fastsynth.model import LlamaConfig  # noqa: E402
from fastsynth.train.config import TrainConfig, load_config  # noqa: E402
from fastsynth.train.flops import flops_per_token, matmul_params, mfu, peak_flops  # noqa: E402
from fastsynth.train.loop import TrainingDiverged, train  # noqa: E402
from fastsynth.train.loss import chunked_cross_entropy  # noqa: E402
from fastsynth.train.schedule import lr_factor  # noqa: E402

TINY = LlamaConfig.preset("tiny", max_seq_len=64)


def tiny_config(**kw) -> TrainConfig:
    base = dict(model=TINY, seq_len=64, micro_batch_rows=4, steps=8, lr=3e-3, warmup_steps=2,
                log_every=1)
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------ loss
@pytest.mark.parametrize("chunk", [3, 7, 64, 1000])
def test_chunked_cross_entropy_matches_plain_loss_and_gradients(chunk):
    g = torch.Generator().manual_seed(0)
    T, H, V = 53, 16, 97
    h = torch.randn(T, H, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, H, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, V, (T,), generator=g)
    y[::5] = -100
    ref = F.cross_entropy(h @ w.t(), y, ignore_index=-100, reduction="sum")
    gh_ref, gw_ref = torch.autograd.grad(ref * 0.37, (h, w))
    got = chunked_cross_entropy(h, w, y, chunk_rows=chunk)
    gh, gw = torch.autograd.grad(got * 0.37, (h, w))
    # float32 softmax inside: tolerance relative to float32 rounding of O(1) terms
    assert abs(got.item() - ref.item()) < 1e-4 * abs(ref.item())
    torch.testing.assert_close(gh, gh_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        assert abs(chunked_cross_entropy(h, w, y, chunk_rows=chunk).item() - ref.item()) \
            < 1e-4 * abs(ref.item())


def test_chunked_cross_entropy_checks_shapes():
    with pytest.raises(ValueError, match="labels"):
        chunked_cross_entropy(torch.zeros(4, 8), torch.zeros(10, 8), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="dtypes"):
        chunked_cross_entropy(torch.zeros(4, 8), torch.zeros(10, 8, dtype=torch.float64),
                              torch.zeros(4, dtype=torch.long))


# ------------------------------------------------------------------ loop
def test_training_lowers_held_out_loss_and_writes_metrics(tmp_path):
    src, held = make_data()
    cfg = tiny_config(steps=30, lr=1e-2, warmup_steps=3, eval_every=15, log_every=5,
                      out_dir=str(tmp_path))
    res = train(cfg, src, eval_data=held)
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in recs if "eval_loss" in r]
    assert len(evals) == 2 and evals[-1] == pytest.approx(res.eval_loss)
    # from ~ln(512) = 6.24 at initialisation: a trained model must be clearly better
    assert res.eval_loss < math.log(512) - 0.5
    steps = [r for r in recs if "loss" in r]
    assert [r["step"] for r in steps] == [5, 10, 15, 20, 25, 30]
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in steps)  # no peak on CPU
    expected_tokens = sum(int(src.batches[i % len(src.batches)]["n_tokens"]) for i in range(30))
    assert res.tokens == steps[-1]["tokens"] == expected_tokens
    assert res.checkpoint is not None and res.checkpoint.name == "step_000030"


def _concat(a: dict, b: dict) -> dict:
    """Two packed batches as one (rows stacked, segments offset)."""
    n = a["input_ids"].numel()
    out = {k: torch.cat([a[k], b[k]]) for k in ("input_ids", "labels", "positions")}
    out["cu_seqlens"] = torch.cat([a["cu_seqlens"], b["cu_seqlens"][1:] + n])
    out["max_seqlen"] = max(a["max_seqlen"], b["max_seqlen"])
    out["n_tokens"] = a["n_tokens"] + b["n_tokens"]
    out["n_target_tokens"] = a["n_target_tokens"] + b["n_target_tokens"]
    return out


def test_gradient_accumulation_equals_one_large_batch():
    src, _ = make_data(rows=2)
    # 3 optimizer steps at three learning rates (two of warm-up, one of decay)
    pairs = [_concat(src.batches[2 * i], src.batches[2 * i + 1]) for i in range(3)]
    one = train(tiny_config(steps=3, micro_batch_rows=4, grad_accum=1), ListSource(pairs))
    acc = train(tiny_config(steps=3, micro_batch_rows=2, grad_accum=2),
                ListSource(src.batches[:6]))
    assert one.losses == pytest.approx(acc.losses, rel=1e-5)
    for (n, p), (_, q) in zip(one.model.named_parameters(), acc.model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=n)


def test_activation_checkpointing_gives_the_same_training():
    src, _ = make_data()
    a = train(tiny_config(steps=4), ListSource(src.batches))
    b = train(tiny_config(steps=4, activation_checkpointing=True), ListSource(src.batches))
    assert a.losses == b.losses


def test_schedules():
    cos = lr_factor(tiny_config(steps=100, warmup_steps=10, min_lr_ratio=0.1))
    assert cos(0) == pytest.approx(1 / 11) and cos(9) == pytest.approx(10 / 11)
    assert cos(10) < 1.0 and cos(99) == pytest.approx(0.1)
    assert all(cos(i) >= cos(i + 1) for i in range(10, 99))
    wsd = lr_factor(tiny_config(steps=100, warmup_steps=10, schedule="wsd", decay_fraction=0.2,
                                min_lr_ratio=0.0))
    assert [wsd(i) for i in (10, 50, 79)] == [1.0, 1.0, 1.0]
    assert wsd(80) == pytest.approx(1 - 1 / 20) and wsd(99) == pytest.approx(0.0)


def test_diverging_loss_stops_and_names_the_step_and_last_checkpoint(tmp_path):
    src, _ = make_data()
    # an absurd learning rate without clipping blows the weights up within a few steps
    cfg = tiny_config(steps=20, lr=1e6, warmup_steps=0, grad_clip=0.0, checkpoint_every=1,
                      out_dir=str(tmp_path))
    with pytest.raises(TrainingDiverged) as err:
        train(cfg, src)
    step = err.value.step
    assert 1 < step <= 20 and f"at step {step}" in str(err.value)
    assert err.value.checkpoint == tmp_path / "checkpoints" / f"step_{step - 1:06d}"
    assert str(err.value.checkpoint) in str(err.value)
    assert not (tmp_path / "checkpoints" / f"step_{step:06d}").exists()


class _OutOfMemorySource(ListSource):
    def __iter__(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield


def test_out_of_memory_suggests_smaller_micro_batch_and_checkpointing():
    with pytest.raises(ConfigError, match=r"micro_batch_rows=2 with grad_accum=2.*"
                                          r"activation_checkpointing"):
        train(tiny_config(), _OutOfMemorySource([]))


def test_data_running_out_is_an_error_naming_the_step():
    src, _ = make_data()

    class Finite(ListSource):
        def __iter__(self):
            yield from self.batches[:3]

    with pytest.raises(ConfigError, match="ran out at step 4"):
        train(tiny_config(steps=8), Finite(src.batches))


# ------------------------------------------------------------------ config files
def test_toml_config_and_unknown_keys(tmp_path):
    good = tmp_path / "run.toml"
    good.write_text('data = "shards"\nsteps = 12\nlr = 1e-3\nseq_len = 64\n[model]\npreset = "tiny"\n'
                    'hidden = 96\nmax_seq_len = 128\n')
    cfg = load_config(good)
    assert cfg.steps == 12 and cfg.model.hidden == 96 and cfg.model.n_layers == 2
    assert cfg.data == str((tmp_path / "shards").resolve())
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = 12\nlearning_rate = 1e-3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*learning_rate"):
        load_config(bad)
    bad.write_text('[model]\npreset = "tiny"\nwidth = 3\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*\[model\].*width"):
        load_config(bad)
    bad.write_text("steps = \n")
    with pytest.raises(InputError, match=r"bad\.toml:1"):
        load_config(bad)
    with pytest.raises(ConfigError, match="warmup_steps"):
        tiny_config(steps=4, warmup_steps=5)


# ------------------------------------------------------------------ FLOPs
def test_flops_count_every_matmul_weight():
    from fastsynth.model import Llama
    cfg = LlamaConfig.preset("tiny")
    model = Llama(cfg, device="meta")
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert matmul_params(cfg) == linear        # the tied head counted once, as a matmul
    assert flops_per_token(cfg, 256) == 6 * linear + 12 * 2 * 4 * 16 * 256
    assert flops_per_token(cfg, 256, causal_halving=True) == 6 * linear + 6 * 2 * 4 * 16 * 256
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H200") == 989e12 and peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("cpu") is None
    big = LlamaConfig.preset("llama-3.2-1b")
    # 1B at 4096: 6N + attention term; 40% MFU on an H100 is ~ 38k tokens/s
    assert mfu(38_000, big, 4096, 989e12) == pytest.approx(
        flops_per_token(big, 4096) * 38_000 / 989e12)


# ------------------------------------------------------------------ export
def test_export_loads_in_transformers_and_the_local_generator(tmp_path):
    transformers = pytest.importorskip("transformers")
    from fastsynth.llm import generator
    from fastsynth.train.export import export
    from fastsynth.train.vocab import train_bpe

    texts = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i)\n"] * 50
    tok = train_bpe(texts, 320)
    model_cfg = TINY.replace(vocab=tok.get_vocab_size())
    src, _ = make_data(vocab=model_cfg.vocab)
    res = train(tiny_config(model=model_cfg, steps=3), src)
    out = export(res.model, tmp_path / "model", tokenizer=tok)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids = torch.tensor([[5, 17, 40, 3, 99, 8]])
    with torch.no_grad():
        ours = res.model(ids)
        theirs = hf(ids).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    htok = transformers.AutoTokenizer.from_pretrained(out)
    assert htok.encode("def add(a, b):") == tok.encode("def add(a, b):").ids
    gen = generator("local", model=str(out), threads=1)
    [c] = gen.generate([[{"role": "user", "content": "def"}]], max_tokens=4)
    assert c.completion_tokens >= 1 and c.finish_reason in ("length", "stop")
