"""FSDP2 (``fully_shard``) on 2 CPU processes over gloo, started the way torchrun starts them.

What torch 2.13 supports on the CPU and is tested here, in one start of the two processes
(each process spends most of its time importing torch.distributed): sharded training (every
rank takes every other batch of the one stream, so a step equals one process with
``grad_accum=2``), evaluation, torch.distributed.checkpoint save + resume (bit-exact on the
same world size), the HF export of the sharded model (gathered to rank 0) and of its
``dcp/`` checkpoint (offline, no process group), ``fastsynth train`` on token shards under
two ranks with its export, and ``fastsynth train --export-only`` of its DCP checkpoint. bf16
mixed precision is not exercised (the CPU path trains in fp32).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_data import make_data, markov_shards  # noqa: E402

from fastsynth.model import LlamaConfig  # noqa: E402
from fastsynth.train.config import TrainConfig  # noqa: E402
from fastsynth.train.loop import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BPE_TEXTS = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i)\n"] * 50
WORKER = textwrap.dedent("""
    import json, os, shutil, sys
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    from train_data import make_data
    from fastsynth.model import LlamaConfig
    from fastsynth.train.config import TrainConfig
    from fastsynth.train.export import export
    from fastsynth.train.loop import train
    from fastsynth.train.vocab import train_bpe
    out = sys.argv[1]
    src, held = make_data()
    cfg = TrainConfig(model=LlamaConfig.preset("tiny", max_seq_len=64), seq_len=64,
                      micro_batch_rows=4, steps=4, warmup_steps=1, log_every=1,
                      checkpoint_every=2, out_dir=out, keep_checkpoints=5)
    r = train(cfg, src, eval_data=held[:4])
    # resume from the step-2 DCP checkpoint in the same processes: steps 3 and 4 again
    if os.environ["RANK"] == "0":
        shutil.rmtree(os.path.join(out, "checkpoints", "step_000004"))
    dist.barrier()
    src2, _ = make_data()
    again = train(cfg, src2, eval_data=held[:4])
    # export the sharded model: collective, rank 0 writes, both return once it is complete
    tok = train_bpe(json.loads(sys.argv[3]), 320)
    folder = export(again.model, os.path.join(out, "model"), tokenizer=tok)
    files = sorted(os.listdir(folder))       # seen by rank 1 too: rank 0's outcome came first
    try:                                     # rank 0 cannot write there (a file, not a folder)
        export(again.model, os.path.join(out, "..", "blocker"))
        failed = None
    except Exception as e:
        failed = f"{type(e).__name__}: {e}"
    # `fastsynth train` under the same two ranks: shards read per rank, export at the end
    from fastsynth.cli import main
    assert main(["train", sys.argv[4], "-o", os.path.join(out, "cli")]) == 0
    with open(os.path.join(out, f"result{os.environ['RANK']}.json"), "w") as f:
        json.dump({"losses": r.losses, "start": r.start_step, "eval": r.eval_loss,
                   "resumed_losses": again.losses, "resumed_start": again.start_step,
                   "export_files": files, "failed_export": failed}, f)
    dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ranks(script: Path, out: Path, cli_config: Path, world: int = 2
                 ) -> list[subprocess.Popen]:
    """``world`` processes with torchrun's environment (env:// rendezvous). The launcher
    itself is left out: it is one more torch import (seconds on 2 loaded cores) and adds
    nothing the loop reads."""
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "python"),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "LOCAL_WORLD_SIZE": str(world)}
        procs.append(subprocess.Popen([sys.executable, str(script), str(out), str(ROOT / "tests"),
                                       json.dumps(BPE_TEXTS), str(cli_config)], env=env,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    """Each rank's stderr; fails naming the rank that exited non-zero."""
    errors, logs = [], []
    for rank, p in enumerate(procs):
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        logs.append(err)
        if p.returncode != 0:
            errors.append(f"rank {rank} exited {p.returncode}:\n{err[-3000:]}")
    assert not errors, "\n".join(errors)
    return logs


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_fsdp2_two_cpu_ranks_match_one_process_resume_from_dcp_and_export(tmp_path):
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file

    from fastsynth.train.export import export_checkpoint, load_checkpoint_model
    from fastsynth.train.vocab import train_bpe

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    (tmp_path / "blocker").write_text("a file where the export's folder would go")
    out = tmp_path / "run"
    shards = markov_shards(tmp_path / "shards", n_docs=60)
    cli_config = tmp_path / "cli.toml"
    cli_config.write_text(f'data = "{shards}"\nsteps = 2\nwarmup_steps = 1\nseq_len = 64\n'
                          'micro_batch_rows = 2\n[model]\npreset = "tiny"\nvocab = 320\n'
                          'max_seq_len = 64\n')
    procs = _start_ranks(script, out, cli_config)
    # meanwhile, one process on the same stream: batches 2k and 2k+1 form step k
    src, held = make_data()
    single = train(TrainConfig(model=LlamaConfig.preset("tiny", max_seq_len=64), seq_len=64,
                               micro_batch_rows=4, grad_accum=2, steps=4, warmup_steps=1,
                               log_every=1), src, eval_data=held[:4])
    logs = _wait(procs)
    sharded = json.loads((out / "result0.json").read_text())
    assert sharded["start"] == 0 and len(sharded["losses"]) == 4
    step2 = out / "checkpoints" / "step_000002"
    step4 = out / "checkpoints" / "step_000004"
    assert (step2 / "dcp").is_dir() and (step2 / "extra_rank1.json").is_file()
    assert (step4 / "meta.json").is_file()                         # written again
    assert sharded["losses"] == pytest.approx(single.losses, rel=1e-5)
    assert sharded["eval"] == pytest.approx(single.eval_loss, rel=1e-5)

    # resumed from the step-2 DCP checkpoint: steps 3 and 4 again, bit for bit
    assert sharded["resumed_start"] == 2
    assert sharded["resumed_losses"] == sharded["losses"][2:]

    # the export of the sharded model: complete when export() returned, on both ranks
    expected = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert sharded["export_files"] == expected
    assert json.loads((out / "result1.json").read_text())["export_files"] == expected
    assert sorted(p.name for p in (out / "model").iterdir()) == expected
    # a write that fails on rank 0 raises on every rank (none waits forever or returns)
    assert sharded["failed_export"].startswith("FileExistsError")
    rank1 = json.loads((out / "result1.json").read_text())["failed_export"]
    assert rank1.startswith("FastsynthError: rank 0 could not write") and "FileExistsError" in rank1

    # offline export of the step-4 DCP checkpoint (no process group): the same tensors
    from_dcp = export_checkpoint(step4, tmp_path / "from_dcp")
    gathered = load_file(out / "model" / "model.safetensors")
    offline = load_file(from_dcp / "model.safetensors")
    assert sorted(gathered) == sorted(offline)
    for name in gathered:
        assert torch.equal(gathered[name], offline[name]), name

    # the FSDP export in transformers = the unsharded model of the same weights, to fp32
    # rounding; and the one-process run (the same training up to summation order)
    plain = load_checkpoint_model(step4)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32)
    ids = torch.tensor([[5, 17, 40, 3, 99, 8, 300, 511]])
    with torch.no_grad():
        theirs = hf(ids).logits
        torch.testing.assert_close(theirs, plain(ids), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(theirs, single.model(ids), rtol=1e-3, atol=1e-3)
    tok = train_bpe(BPE_TEXTS, 320)
    htok = transformers.AutoTokenizer.from_pretrained(out / "model")
    assert htok.encode("def add(a, b):") == tok.encode("def add(a, b):").ids

    # `fastsynth train` under two ranks: rank 0 reports, the export holds the step-2
    # checkpoint's weights and the shard set's tokenizer
    assert "trained steps 1-2" in logs[0] and "trained steps" not in logs[1]
    assert f"model: {out / 'cli' / 'model'}" in logs[0]
    cli_model = load_file(out / "cli" / "model" / "model.safetensors")
    shard_tok = json.loads((shards / "tokenizer.json").read_text())
    assert json.loads((out / "cli" / "model" / "tokenizer.json").read_text()) == shard_tok
    # `fastsynth train --export-only`, here in one process: OUT/model again, from the DCP
    from fastsynth.cli import main
    shutil.rmtree(out / "cli" / "model")
    assert main(["train", str(cli_config), "-o", str(out / "cli"), "--export-only"]) == 0
    cli_ckpt = load_file(out / "cli" / "model" / "model.safetensors")
    assert sorted(cli_model) == sorted(cli_ckpt)
    assert all(torch.equal(cli_model[k], cli_ckpt[k]) for k in cli_model)
    assert json.loads((out / "cli" / "model" / "tokenizer.json").read_text()) == shard_tok
