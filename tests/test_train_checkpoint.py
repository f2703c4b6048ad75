"""Checkpoints: bit-exact resume after a SIGKILL, refusal of another configuration, atomic
writes (a killed writer's temp folder is never read)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from fastsynth.errors import ConfigError
from fastsynth.model import LlamaConfig
from fastsynth.train import checkpoint as ckpt
from fastsynth.train.config import TrainConfig
from fastsynth.train.loader import LoaderConfig, PackedLoader
from fastsynth.train.loop import train

sys.path.insert(0, str(Path(__file__).parent))
from train_data import make_data, markov_shards  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVERY = 12, 3


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """A real shard set (fastsynth.train.tokenize with a trained BPE) of Markov 'words'."""
    return markov_shards(tmp_path_factory.mktemp("shards"))


def _config(out: str = "", **kw) -> TrainConfig:
    base = dict(model=LlamaConfig.preset("tiny", vocab=320, max_seq_len=64), seq_len=64,
                micro_batch_rows=4, steps=STEPS, lr=3e-3, warmup_steps=2, log_every=1,
                checkpoint_every=EVERY, out_dir=out, keep_checkpoints=10)
    base.update(kw)
    return TrainConfig(**base)


def _loader(shards: Path) -> PackedLoader:
    return PackedLoader(str(shards), LoaderConfig(seq_len=64, batch_rows=4, seed=5))


CHILD = textwrap.dedent("""
    import sys, time
    from fastsynth.model import LlamaConfig
    from fastsynth.train.config import TrainConfig
    from fastsynth.train.loader import LoaderConfig, PackedLoader
    from fastsynth.train.loop import train
    shards, out, steps, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cfg = TrainConfig(model=LlamaConfig.preset("tiny", vocab=320, max_seq_len=64), seq_len=64,
                      micro_batch_rows=4, steps=steps, lr=3e-3, warmup_steps=2, log_every=1,
                      checkpoint_every=every, out_dir=out, keep_checkpoints=10)
    loader = PackedLoader(shards, LoaderConfig(seq_len=64, batch_rows=4, seed=5))
    # two steps after the first checkpoint, wait to be killed: the kill lands between two
    # checkpoints, after steps that no checkpoint holds (on_step runs before a step is logged)
    train(cfg, loader, on_step=lambda step, loss: time.sleep(600) if step == every + 2 else None)
""")


def test_resume_after_sigkill_is_bit_exact(shards, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(shards), str(out), str(STEPS),
                             str(EVERY)], env=env, stderr=subprocess.PIPE)
    try:
        straight = train(_config(), _loader(shards))      # while the child starts up
        after = out / "metrics.jsonl"
        deadline = time.time() + 300
        # the child logs step EVERY + 1 after its first checkpoint, then waits to be killed
        while not (after.exists() and f'"step": {EVERY + 1},' in after.read_text()):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, f"the child did not reach step {EVERY + 1} in 300 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    found = ckpt.latest(out)
    killed_at = json.loads((found / "meta.json").read_text())["step"]
    assert killed_at == EVERY                   # killed two steps past it, before the next one
    logged = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == EVERY + 1              # the lost step's line, cut back on resume
    resumed = train(_config(str(out)), _loader(shards))
    assert resumed.start_step == killed_at
    assert len(resumed.losses) == STEPS - killed_at
    assert resumed.losses == straight.losses[killed_at:]          # bit-exact, not approx
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, STEPS + 1))   # one run, no duplicates
    assert [r["loss"] for r in lines] == straight.losses
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_checkpoint_of_another_config_is_refused_naming_the_difference(tmp_path):
    src, _ = make_data(vocab=320, rows=4)
    train(_config(str(tmp_path), steps=3, checkpoint_every=3), src)
    other = _config(str(tmp_path), steps=6, model=LlamaConfig.preset("tiny", vocab=320,
                                                                     max_seq_len=64, hidden=96))
    with pytest.raises(ConfigError, match=r"model\.hidden: 64 -> 96.*steps: 3 -> 6"):
        train(other, src)
    with pytest.raises(ConfigError, match=r"lr: 0\.003 -> 0\.001"):
        train(_config(str(tmp_path), steps=3, lr=1e-3), src)
    # where and how often things are written may change
    again = train(_config(str(tmp_path), steps=3, log_every=2), src)
    assert again.start_step == 3 and again.losses == []


def test_killed_writer_leaves_previous_checkpoint_and_its_temp_is_swept(tmp_path):
    src, _ = make_data(vocab=320, rows=4)
    train(_config(str(tmp_path), steps=3, checkpoint_every=3), src)
    root = tmp_path / "checkpoints"
    stale = root / ".step_000006.tmp-99999999"        # what a writer killed mid-save leaves
    stale.mkdir()
    (stale / "state.pt").write_bytes(b"half a file")
    assert ckpt.latest(tmp_path) == root / "step_000003"
    res = train(_config(str(tmp_path), steps=6, checkpoint_every=3, warmup_steps=2)
                .replace(steps=3), src)            # resumes the finished run: nothing to do
    assert res.start_step == 3 and stale.exists()
    src2, _ = make_data(vocab=320, rows=4)
    train(_config(str(tmp_path / "b"), steps=3, checkpoint_every=1), src2)
    (tmp_path / "b" / "checkpoints" / stale.name).mkdir()
    train(_config(str(tmp_path / "b"), steps=3, checkpoint_every=1), src2, resume=False)
    assert not (tmp_path / "b" / "checkpoints" / stale.name).exists()
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == \
        ["step_000001", "step_000002", "step_000003"]


def test_cli_train_trains_exports_and_resumes(shards, tmp_path, capsys):
    from fastsynth.cli import main
    from fastsynth.model.hf import read_hf_dir
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = "{shards}"\neval_data = "{shards}"\nsteps = 4\nwarmup_steps = 1\n'
                   'seq_len = 64\nmicro_batch_rows = 2\neval_batches = 2\n'
                   '[model]\npreset = "tiny"\nvocab = 320\nmax_seq_len = 64\n')
    out = tmp_path / "out"
    assert main(["train", str(cfg), "-o", str(out)]) == 0
    assert "trained steps 1-4" in capsys.readouterr().err
    config, state = read_hf_dir(out / "model")
    assert config.vocab == 320 and (out / "model" / "tokenizer.json").is_file()
    assert (out / "checkpoints" / "step_000004" / "meta.json").is_file()
    # the one-process checkpoint (state.pt) exported offline: the same tensors
    from safetensors.torch import load_file

    from fastsynth.train.export import export_checkpoint
    exported = load_file(out / "model" / "model.safetensors")
    offline = load_file(export_checkpoint(out / "checkpoints" / "step_000004",
                                          tmp_path / "offline") / "model.safetensors")
    assert sorted(exported) == sorted(offline)
    assert all(torch.equal(exported[k], offline[k]) for k in exported)
    assert main(["train", str(cfg), "-o", str(out)]) == 0
    assert "nothing to train" in capsys.readouterr().err
    assert main(["train", str(cfg), "-o", str(tmp_path / "empty"), "--export-only"]) == 2
    assert f"{tmp_path / 'empty'} holds no checkpoint to export" in capsys.readouterr().err
    cfg.write_text(cfg.read_text().replace("steps = 4", "steps = 4\nlearning_rate = 1"))
    assert main(["train", str(cfg), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "run.toml" in err and "learning_rate" in err
