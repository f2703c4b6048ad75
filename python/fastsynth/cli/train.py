"""``fastsynth train CONFIG.toml``: train a model on token shards, then export it.

The TOML file holds a :class:`fastsynth.train.config.TrainConfig` (layout in
:mod:`fastsynth.train.config`; unknown keys are errors naming the key and the file).
``data`` / ``eval_data`` are shard-set folders written by ``fastsynth.train.tokenize``.
Writes ``OUT/metrics.jsonl``, ``OUT/checkpoints/`` and ``OUT/model/`` (HF safetensors +
tokenizer, loadable by transformers and ``fastsynth generate --model OUT/model``). Rerunning
resumes from the newest checkpoint. Under ``torchrun --nproc-per-node N`` the ranks shard
the model with FSDP2, and the export gathers the full weights to rank 0, which writes them.
``--export-only`` writes ``OUT/model`` from OUT's newest checkpoint without training, in one
process, whatever world size wrote the checkpoint.
"""
from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model on token shards (TOML config)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG.toml", help="training configuration")
    p.add_argument("-o", "--out", help="output folder (overrides the file's out_dir)")
    p.add_argument("--no-resume", action="store_true",
                   help="start from scratch even if OUT holds checkpoints")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--no-export", action="store_true", help="do not write OUT/model")
    what.add_argument("--export-only", action="store_true",
                      help="do not train: write OUT/model from OUT's newest checkpoint (one "
                           "process, whatever world size wrote it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    from itertools import islice
    from pathlib import Path

    from fastsynth.errors import ConfigError
    from fastsynth.train.config import load_config
    from fastsynth.train import checkpoint as ckpt
    from fastsynth.train.export import export, export_checkpoint
    from fastsynth.train.loader import LoaderConfig, PackedLoader
    from fastsynth.train.loop import train

    config = load_config(args.config)
    if args.out:
        config = config.replace(out_dir=str(Path(args.out).resolve()))
    if not config.out_dir:
        raise ConfigError(f"{args.config}: out_dir is not set; give -o/--out")
    if args.export_only:
        found = ckpt.latest(config.out_dir)
        if found is None:
            raise ConfigError(f"{config.out_dir} holds no checkpoint to export")
        tok = config.tokenizer or (str(Path(config.data) / "tokenizer.json") if config.data
                                   else None)
        out = export_checkpoint(found, Path(config.out_dir) / "model", tokenizer=tok)
        print(f"model: {out} (from {found})", file=sys.stderr)
        return 0
    if not config.data:
        raise ConfigError(f"{args.config}: 'data' (a token shard folder) is required")
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    data = PackedLoader(config.data, LoaderConfig(seq_len=config.seq_len,
                                                  batch_rows=config.micro_batch_rows,
                                                  seed=config.seed, rank=rank, world_size=world))
    eval_batches = None
    if config.eval_data:
        held = PackedLoader(config.eval_data, LoaderConfig(seq_len=config.seq_len,
                                                           batch_rows=config.micro_batch_rows,
                                                           seed=config.seed, epochs=1))
        eval_batches = list(islice(held, config.eval_batches or None))
    res = train(config, data, eval_data=eval_batches, resume=not args.no_resume)
    if rank == 0:
        ev = f", eval loss {res.eval_loss:.4f}" if res.eval_loss is not None else ""
        if res.losses:
            print(f"trained steps {res.start_step + 1}-{res.steps} ({res.tokens:,} tokens in "
                  f"all), final loss {res.losses[-1]:.4f}{ev}, {res.tokens_per_s:,.0f} tokens/s",
                  file=sys.stderr)
        else:
            print(f"nothing to train: {config.out_dir} holds the checkpoint of the last step "
                  f"({res.steps}){ev}", file=sys.stderr)
    if not args.no_export:
        # under torchrun every rank takes part (the sharded weights are gathered to rank 0)
        tok = config.tokenizer or str(Path(config.data) / "tokenizer.json")
        out = export(res.model, Path(config.out_dir) / "model", tokenizer=tok)
        if rank == 0:
            print(f"model: {out}", file=sys.stderr)
    return 0
