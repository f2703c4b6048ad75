"""Train small models on the data fastsynth builds.

The data path (docs/token-shards.md): ``tokenize`` (corpus -> token shards), ``shards``
(the on-disk format, memory-mapped), ``packing`` (documents -> rows, native), ``rows``
(rows -> the packed batch arrays), ``mixture`` (weighted shard sets), ``loader`` (the
resumable, rank-exact stream of batches).

Names load lazily on first access (the loader and the loop need torch; ``import
fastsynth.train`` does not). To export a name, add one line to ``_LAZY``: name -> module.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    # packing
    "pack": "fastsynth.train.packing",
    "pack_stats": "fastsynth.train.packing",
    "PackStats": "fastsynth.train.packing",
    "PIECE_DTYPE": "fastsynth.train.packing",
    # packed rows
    "packed_rows": "fastsynth.train.rows",
    "padded_rows": "fastsynth.train.rows",
    "IGNORE_INDEX": "fastsynth.train.rows",
    # tokenizers and tokenization
    "TokenizerSpec": "fastsynth.train.vocab",
    "load_tokenizer": "fastsynth.train.vocab",
    "train_bpe": "fastsynth.train.vocab",
    "tokenize": "fastsynth.train.tokenize",
    "TokenizeSummary": "fastsynth.train.tokenize",
    # token shards
    "ShardSet": "fastsynth.train.shards",
    "ShardWriter": "fastsynth.train.shards",
    "Shard": "fastsynth.train.shards",
    # mixtures and the loader
    "Mixture": "fastsynth.train.mixture",
    "PackedDataset": "fastsynth.train.loader",
    "PackedLoader": "fastsynth.train.loader",
    "LoaderConfig": "fastsynth.train.loader",
    # statistics
    "shard_stats": "fastsynth.train.stats",
    # the training loop, checkpoints, export (docs/training.md)
    "TrainConfig": "fastsynth.train.config",
    "load_config": "fastsynth.train.config",
    "train": "fastsynth.train.loop",
    "TrainResult": "fastsynth.train.loop",
    "TrainingDiverged": "fastsynth.train.loop",
    "chunked_cross_entropy": "fastsynth.train.loss",
    "flops_per_token": "fastsynth.train.flops",
    "export": "fastsynth.train.export",
    # scaling sweeps
    "SweepConfig": "fastsynth.train.sweep",
    "SweepSize": "fastsynth.train.sweep",
    "sweep": "fastsynth.train.sweep",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastsynth.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = sorted(_LAZY)
