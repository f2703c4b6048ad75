"""FSDP2 (``fully_shard``) on 2 CPU processes over gloo, started by torchrun.

What torch 2.13 supports on the CPU and is tested here: sharded training (every rank takes
every other batch of the one stream, so a step equals one process with ``grad_accum=2``),
evaluation, and torch.distributed.checkpoint save + resume (bit-exact on the same world
size). bf16 mixed precision is not exercised (the CPU path trains in fp32).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_data import make_data  # noqa: E402

from fastsynth.model import LlamaConfig  # noqa: E402
from fastsynth.train.config import TrainConfig  # noqa: E402
from fastsynth.train.loop import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = textwrap.dedent("""
    import json, os, shutil, sys
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    from train_data import make_data
    from fastsynth.model import LlamaConfig
    from fastsynth.train.config import TrainConfig
    from fastsynth.train.loop import train
    src, held = make_data()
    cfg = TrainConfig(model=LlamaConfig.preset("tiny", max_seq_len=64), seq_len=64,
                      micro_batch_rows=4, steps=4, warmup_steps=1, log_every=1,
                      checkpoint_every=2, out_dir=sys.argv[1], keep_checkpoints=5)
    r = train(cfg, src, eval_data=held[:4])
    # resume from the step-2 DCP checkpoint in the same processes: steps 3 and 4 again
    if os.environ["RANK"] == "0":
        shutil.rmtree(os.path.join(sys.argv[1], "checkpoints", "step_000004"))
    dist.barrier()
    src2, _ = make_data()
    again = train(cfg, src2, eval_data=held[:4])
    if os.environ["RANK"] == "0":
        with open(os.path.join(sys.argv[1], "result.json"), "w") as f:
            json.dump({"losses": r.losses, "start": r.start_step, "eval": r.eval_loss,
                       "resumed_losses": again.losses, "resumed_start": again.start_step}, f)
""")


def _torchrun(script: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "python")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--standalone", str(script), str(out), str(ROOT / "tests")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_fsdp2_two_cpu_ranks_match_one_process_and_resume_from_dcp(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run"
    sharded = _torchrun(script, out)
    assert sharded["start"] == 0 and len(sharded["losses"]) == 4
    assert (out / "checkpoints" / "step_000002" / "dcp").is_dir()
    assert (out / "checkpoints" / "step_000004" / "meta.json").is_file()   # written again
    assert (out / "checkpoints" / "step_000002" / "extra_rank1.json").is_file()

    # one process, the same stream: batches 2k and 2k+1 form step k
    src, held = make_data()
    single = train(TrainConfig(model=LlamaConfig.preset("tiny", max_seq_len=64), seq_len=64,
                               micro_batch_rows=4, grad_accum=2, steps=4, warmup_steps=1,
                               log_every=1), src, eval_data=held[:4])
    assert sharded["losses"] == pytest.approx(single.losses, rel=1e-5)
    assert sharded["eval"] == pytest.approx(single.eval_loss, rel=1e-5)

    # resumed from the step-2 DCP checkpoint: steps 3 and 4 again, bit for bit
    assert sharded["resumed_start"] == 2
    assert sharded["resumed_losses"] == sharded["losses"][2:]
